//! Image garbage collection, as kubelet's image GC manager
//! (`pkg/kubelet/images/image_gc_manager.go`): every [`Policy::period`] the node's images
//! are detected (first seen, last seen in use by a container), images unused for longer
//! than `--image-maximum-gc-age` are removed, and when the filesystem holding the image
//! store is at `--image-gc-high-threshold` percent or more, the least recently used
//! images are removed until it would be at `--image-gc-low-threshold`. An image a
//! container on the node uses (running or not yet removed), a built-in image and one
//! younger than `--image-minimum-gc-age` are never removed; a layer goes with the last
//! image that has it.
//!
//! The choice is pure ([`old_images`], [`amount_to_free`], [`choose`]); [`run`] carries
//! it out against the node's [`ImageStore`] and records kubelet's events and log lines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};

use super::Kubelet;
use crate::containers::images::{ImageStore, StoreEntry};

/// kubelet's `ImageGCPeriod`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5 * 60);

/// When images are collected (kubelet's `ImageGCPolicy` and flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `--image-gc-high-threshold`: at this disk usage (percent) or more, images go.
    pub high_threshold_percent: u32,
    /// `--image-gc-low-threshold`: the usage collection frees down to.
    pub low_threshold_percent: u32,
    /// `--image-minimum-gc-age`: an image seen for less long is kept.
    pub min_age: Duration,
    /// `--image-maximum-gc-age`: an image unused for longer goes whatever the usage
    /// (zero: never).
    pub max_age: Duration,
    /// How often collection runs (kubelet: 5 minutes).
    pub period: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            max_age: Duration::ZERO,
            period: DEFAULT_PERIOD,
        }
    }
}

impl Policy {
    /// Checks the thresholds as kubelet's `NewImageGCManager` does, with its messages.
    pub fn validate(&self) -> Result<()> {
        if self.high_threshold_percent > 100 {
            bail!(
                "invalid HighThresholdPercent {}, must be in range [0-100]",
                self.high_threshold_percent
            );
        }
        if self.low_threshold_percent > 100 {
            bail!(
                "invalid LowThresholdPercent {}, must be in range [0-100]",
                self.low_threshold_percent
            );
        }
        if self.low_threshold_percent > self.high_threshold_percent {
            bail!(
                "LowThresholdPercent {} can not be higher than HighThresholdPercent {}",
                self.low_threshold_percent,
                self.high_threshold_percent
            );
        }
        Ok(())
    }

    /// Whether collection is off, as kubelet's: a high threshold of 100 and no maximum
    /// age.
    pub fn disabled(&self) -> bool {
        self.high_threshold_percent >= 100 && self.max_age.is_zero()
    }
}

/// Parses a Go duration as kubelet's flags take them (`2m`, `1h30m`, `90s`, `500ms`,
/// `0`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        bail!("invalid duration {s:?}");
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| anyhow!("invalid duration {s:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "" => bail!("missing unit in duration {s:?}"),
            _ => bail!("unknown unit {unit:?} in duration {s:?}"),
        };
        total += value * secs;
        rest = tail;
    }
    Ok(Duration::from_secs_f64(total))
}

/// What the collector knows of one image (kubelet's `imageRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When it was first seen.
    pub first_detected: DateTime<Utc>,
    /// When it was last seen in use by a container (None: not since the agent started).
    pub last_used: Option<DateTime<Utc>>,
}

/// The images the collector tracks, by ID.
#[derive(Debug, Default)]
pub struct Records(pub HashMap<String, Record>);

impl Records {
    /// kubelet's `detectImages`: new images are first seen `now`, those in use are last
    /// used `now`, and images that went away are forgotten.
    pub fn detect<'a>(
        &mut self,
        images: impl IntoIterator<Item = &'a str>,
        in_use: &HashSet<String>,
        now: DateTime<Utc>,
    ) {
        let mut present = HashSet::new();
        for id in images {
            present.insert(id.to_string());
            let r = self.0.entry(id.to_string()).or_insert(Record {
                first_detected: now,
                last_used: None,
            });
            if in_use.contains(id) {
                r.last_used = Some(now);
            }
        }
        self.0.retain(|id, _| present.contains(id));
    }
}

/// One image as the choice sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Image ID.
    pub id: String,
    /// Its layers' diff IDs.
    pub layers: Vec<String>,
    /// Bytes of its own (an imported image's `rootfs/`), freed with it.
    pub own_bytes: u64,
    /// Its record.
    pub record: Record,
    /// A container on the node uses it.
    pub in_use: bool,
}

/// The filesystem holding the image store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Bytes in all.
    pub capacity: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
}

impl FsStats {
    /// Reads the filesystem that holds `path`.
    pub fn of(path: &std::path::Path) -> Result<FsStats> {
        let s = nix::sys::statvfs::statvfs(path)
            .map_err(|e| anyhow!("statfs {}: {e}", path.display()))?;
        let frag = s.fragment_size();
        Ok(FsStats {
            capacity: s.blocks() * frag,
            available: s.blocks_available() * frag,
        })
    }
}

/// The images in kubelet's eviction order (`imagesInEvictionOrder`): not in use, least
/// recently used first (never used before any used), ties broken by first detection
/// (then ID, so the order is stable).
pub fn eviction_order(images: &[Candidate]) -> Vec<&Candidate> {
    let mut out: Vec<&Candidate> = images.iter().filter(|c| !c.in_use).collect();
    out.sort_by(|a, b| {
        a.record
            .last_used
            .cmp(&b.record.last_used)
            .then(a.record.first_detected.cmp(&b.record.first_detected))
            .then(a.id.cmp(&b.id))
    });
    out
}

/// kubelet's `freeOldImages`: with a maximum age, once the collector has run for longer
/// than it, the unused images not used for longer than it (or not since the start).
pub fn old_images(
    policy: &Policy,
    images: &[Candidate],
    now: DateTime<Utc>,
    began: DateTime<Utc>,
) -> Vec<String> {
    if policy.max_age.is_zero() || elapsed(began, now) <= policy.max_age {
        return Vec::new();
    }
    eviction_order(images)
        .into_iter()
        .filter(|c| {
            c.record
                .last_used
                .is_none_or(|t| elapsed(t, now) > policy.max_age)
        })
        .map(|c| c.id.clone())
        .collect()
}

/// Why a collection could not run or did not free enough, with kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcError {
    /// The filesystem reports no capacity (event `InvalidDiskCapacity`).
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    /// Not enough was eligible (event `FreeDiskSpaceFailed`).
    #[error("Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free.")]
    NotEnough {
        /// Bytes to free to reach the low threshold.
        wanted: u64,
        /// Bytes the eligible images held.
        freed: u64,
    },
}

/// The usage in percent (kubelet's arithmetic) and, at the high threshold or above, the
/// bytes to free to get down to the low one.
pub fn amount_to_free(policy: &Policy, fs: FsStats) -> Result<(u32, Option<u64>), GcError> {
    if fs.capacity == 0 {
        return Err(GcError::InvalidCapacity);
    }
    let available = fs.available.min(fs.capacity);
    let usage = 100 - (available as u128 * 100 / fs.capacity as u128) as u32;
    if usage < policy.high_threshold_percent {
        return Ok((usage, None));
    }
    let target = fs.capacity as u128 * (100 - policy.low_threshold_percent as u128) / 100;
    Ok((usage, Some(target.saturating_sub(available as u128) as u64)))
}

/// What [`choose`] picked: images in the order to remove them, each with the bytes its
/// removal frees, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// `(image ID, bytes freed)`, in order.
    pub remove: Vec<(String, u64)>,
    /// Their bytes together.
    pub freed: u64,
}

/// kubelet's `freeSpace`: the images to remove, in eviction order, skipping those used
/// at `now` or younger than the minimum age, until `to_free` bytes are freed. An image
/// frees its own bytes and those of its layers no remaining image has (shared layers
/// are freed with the last image that has them; `layer_bytes` gives their sizes).
pub fn choose(
    policy: &Policy,
    images: &[Candidate],
    layer_bytes: &BTreeMap<String, u64>,
    to_free: u64,
    now: DateTime<Utc>,
) -> Choice {
    let mut users: HashMap<&str, usize> = HashMap::new();
    for c in images {
        for l in unique(&c.layers) {
            *users.entry(l).or_default() += 1;
        }
    }
    let mut choice = Choice::default();
    for c in eviction_order(images) {
        if c.record.last_used.is_some_and(|t| t >= now) {
            continue;
        }
        if elapsed(c.record.first_detected, now) < policy.min_age {
            continue;
        }
        let mut bytes = c.own_bytes;
        for l in unique(&c.layers) {
            let n = users.get_mut(l).expect("counted above");
            *n -= 1;
            if *n == 0 {
                bytes += layer_bytes.get(l).copied().unwrap_or(0);
            }
        }
        choice.remove.push((c.id.clone(), bytes));
        choice.freed += bytes;
        if choice.freed >= to_free {
            break;
        }
    }
    choice
}

fn unique(layers: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    layers
        .iter()
        .map(String::as_str)
        .filter(|l| seen.insert(*l))
        .collect()
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

/// The collector of one node: its records and what it needs to reach the store.
pub struct Collector {
    policy: Policy,
    records: Records,
    began: DateTime<Utc>,
    /// Layer sizes measured once (layers never change).
    layer_bytes: BTreeMap<String, u64>,
}

impl Collector {
    /// A collector that starts now.
    pub fn new(policy: Policy) -> Self {
        Collector {
            policy,
            records: Records::default(),
            began: Utc::now(),
            layer_bytes: BTreeMap::new(),
        }
    }

    /// One pass of kubelet's `GarbageCollect` over `store`, with `in_use` the images
    /// containers use. Returns the IDs of the images it removed.
    pub fn collect(
        &mut self,
        store: &ImageStore,
        in_use: &HashSet<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        // A load in progress finishes first: its layers are never taken for unused.
        let _held = store.exclusive()?;
        let candidates = self.candidates(store, in_use, now)?;
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for id in old_images(&self.policy, &candidates, now, self.began) {
            tracing::info!(image_id = %id, "Removing image to free bytes (older than the maximum age)");
            match store.remove(&id) {
                Ok(_) => removed.push(id),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() {
            bail!(
                "wanted to free images older than {:?}, encountered errors in image deletion: [{}]",
                self.policy.max_age,
                errors.join(", ")
            );
        }
        let candidates: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| !removed.contains(&c.id))
            .collect();
        // The store's directory, or the data directory that will hold it.
        let fs = match store.dir().exists() {
            true => FsStats::of(store.dir())?,
            false => FsStats::of(store.dir().parent().unwrap_or(store.dir()))?,
        };
        let (usage, Some(wanted)) = amount_to_free(&self.policy, fs)? else {
            return Ok(removed);
        };
        tracing::info!(
            usage,
            high_threshold = self.policy.high_threshold_percent,
            amount_to_free = wanted,
            low_threshold = self.policy.low_threshold_percent,
            "Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold"
        );
        let choice = choose(&self.policy, &candidates, &self.layer_bytes, wanted, now);
        let mut freed = 0;
        for (id, bytes) in &choice.remove {
            tracing::info!(image_id = %id, size = bytes, "Removing image to free bytes");
            match store.remove(id) {
                Ok(_) => {
                    freed += bytes;
                    removed.push(id.clone());
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        self.records.0.retain(|id, _| !removed.contains(id));
        if !errors.is_empty() {
            bail!(
                "wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: [{}]",
                errors.join(", ")
            );
        }
        if freed < wanted {
            return Err(GcError::NotEnough { wanted, freed }.into());
        }
        Ok(removed)
    }

    fn candidates(
        &mut self,
        store: &ImageStore,
        in_use: &HashSet<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Candidate>> {
        let entries: Vec<StoreEntry> = store.entries()?;
        self.records
            .detect(entries.iter().map(|e| e.id.as_str()), in_use, now);
        for e in &entries {
            for l in &e.layers {
                if !self.layer_bytes.contains_key(l) {
                    self.layer_bytes.insert(l.clone(), store.layers.size(l));
                }
            }
        }
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let record = self.records.0.get(&e.id)?.clone();
                Some(Candidate {
                    in_use: in_use.contains(&e.id),
                    id: e.id,
                    layers: e.layers,
                    own_bytes: e.own_bytes,
                    record,
                })
            })
            .collect())
    }
}

/// Runs the collector forever (kubelet's `StartGarbageCollection`): a failed pass is
/// logged; a second failure in a row is also recorded as an `ImageGCFailed` event on
/// the Node, and a pass that cannot free enough records `FreeDiskSpaceFailed`.
pub async fn run(k: Arc<Kubelet>, policy: Policy) {
    if policy.disabled() {
        tracing::info!(
            "ImageGCHighThresholdPercent is set 100 and ImageMaximumGCAge is 0, Disable image GC"
        );
        return;
    }
    let collector = Arc::new(std::sync::Mutex::new(Collector::new(policy)));
    let node_ref = crate::node::node_ref(&k.cfg.node_name);
    let mut prev_failed = false;
    let mut tick = tokio::time::interval(policy.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (k2, c2) = (k.clone(), collector.clone());
        let result = tokio::task::spawn_blocking(move || {
            let in_use = k2.images_in_use();
            let mut c = c2.lock().unwrap_or_else(|e| e.into_inner());
            c.collect(&k2.images, &in_use, Utc::now())
        })
        .await
        .unwrap_or_else(|e| Err(anyhow!("image garbage collection panicked: {e}")));
        match result {
            Ok(removed) => {
                if prev_failed || !removed.is_empty() {
                    tracing::info!(
                        removed = removed.len(),
                        "Image garbage collection succeeded"
                    );
                } else {
                    tracing::debug!("Image garbage collection succeeded");
                }
                prev_failed = false;
            }
            Err(e) => {
                let message = format!("{e:#}");
                match e.downcast_ref::<GcError>() {
                    Some(GcError::NotEnough { .. }) => k.events.publish_ref(
                        node_ref.clone(),
                        "Warning",
                        "FreeDiskSpaceFailed",
                        message.clone(),
                    ),
                    Some(GcError::InvalidCapacity) => k.events.publish_ref(
                        node_ref.clone(),
                        "Warning",
                        "InvalidDiskCapacity",
                        message.clone(),
                    ),
                    None => {}
                }
                if prev_failed {
                    tracing::error!(err = %message, "Image garbage collection failed multiple times in a row");
                    k.events
                        .publish_ref(node_ref.clone(), "Warning", "ImageGCFailed", message);
                } else {
                    tracing::error!(err = %message, "Image garbage collection failed once. Stats initialization may not have completed yet");
                }
                prev_failed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn image(id: &str, layers: &[&str], first: i64, used: Option<i64>) -> Candidate {
        Candidate {
            id: id.into(),
            layers: layers.iter().map(|l| l.to_string()).collect(),
            own_bytes: 0,
            record: Record {
                first_detected: t(first),
                last_used: used.map(t),
            },
            in_use: false,
        }
    }

    fn sizes(list: &[(&str, u64)]) -> BTreeMap<String, u64> {
        list.iter().map(|(l, b)| (l.to_string(), *b)).collect()
    }

    fn ids(c: &Choice) -> Vec<&str> {
        c.remove.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn policy_is_validated_with_kubelets_messages() {
        assert!(Policy::default().validate().is_ok());
        let p = Policy {
            high_threshold_percent: 70,
            low_threshold_percent: 80,
            ..Default::default()
        };
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "LowThresholdPercent 80 can not be higher than HighThresholdPercent 70"
        );
        let p = Policy {
            high_threshold_percent: 101,
            ..Default::default()
        };
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "invalid HighThresholdPercent 101, must be in range [0-100]"
        );
        assert!(Policy {
            high_threshold_percent: 100,
            ..Default::default()
        }
        .disabled());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn usage_and_amount_to_free_as_kubelet_computes_them() {
        let p = Policy::default();
        // 84% used: below the high threshold.
        let fs = FsStats {
            capacity: 1000,
            available: 160,
        };
        assert_eq!(amount_to_free(&p, fs), Ok((84, None)));
        // 90% used: free down to 80%, i.e. until 200 bytes are available.
        let fs = FsStats {
            capacity: 1000,
            available: 100,
        };
        assert_eq!(amount_to_free(&p, fs), Ok((90, Some(100))));
        assert_eq!(
            amount_to_free(
                &p,
                FsStats {
                    capacity: 0,
                    available: 0
                }
            ),
            Err(GcError::InvalidCapacity)
        );
    }

    #[test]
    fn least_recently_used_first_never_used_before_used() {
        let images = vec![
            image("used-late", &["a"], 0, Some(500)),
            image("never-late", &["b"], 100, None),
            image("used-early", &["c"], 0, Some(200)),
            image("never-early", &["d"], 50, None),
        ];
        let order: Vec<&str> = eviction_order(&images)
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(
            order,
            ["never-early", "never-late", "used-early", "used-late"]
        );
    }

    #[test]
    fn frees_until_enough_skipping_in_use_and_young_images() {
        let p = Policy::default();
        let mut images = vec![
            image("old", &["l1"], 0, None),
            image("young", &["l2"], 900, None),
            image("busy", &["l3"], 0, None),
            image("recent", &["l4"], 0, Some(800)),
            image("spare", &["l5"], 0, Some(850)),
        ];
        images[2].in_use = true;
        let bytes = sizes(&[("l1", 10), ("l2", 20), ("l3", 30), ("l4", 40), ("l5", 50)]);
        // now = 1000: "young" is 100 s old (< 2 min).
        let c = choose(&p, &images, &bytes, 45, t(1000));
        assert_eq!(ids(&c), ["old", "recent"]);
        assert_eq!(c.freed, 50);
        // Wanting more than there is: everything eligible, still short.
        let c = choose(&p, &images, &bytes, 1000, t(1000));
        assert_eq!(ids(&c), ["old", "recent", "spare"]);
        assert_eq!(c.freed, 100);
        // Without a minimum age the young one goes first (never used).
        let p0 = Policy {
            min_age: Duration::ZERO,
            ..p
        };
        let c = choose(&p0, &images, &bytes, 1, t(1000));
        assert_eq!(ids(&c), ["old"]);
        let c = choose(&p0, &images, &bytes, 25, t(1000));
        assert_eq!(ids(&c), ["old", "young"]);
    }

    #[test]
    fn a_shared_layer_is_freed_with_the_last_image_that_has_it() {
        let p = Policy {
            min_age: Duration::ZERO,
            ..Default::default()
        };
        let mut images = vec![
            image("a", &["base", "a1"], 0, None),
            image("b", &["base", "b1"], 1, None),
            image("c", &["base2", "c1"], 2, None),
            image("d", &["base2", "d1"], 3, None),
        ];
        images[3].in_use = true;
        let bytes = sizes(&[
            ("base", 100),
            ("a1", 1),
            ("b1", 2),
            ("base2", 1000),
            ("c1", 3),
            ("d1", 4),
        ]);
        let c = choose(&p, &images, &bytes, u64::MAX, t(10));
        assert_eq!(
            c.remove,
            vec![
                ("a".to_string(), 1),
                ("b".to_string(), 102),
                // base2 stays: "d" uses it.
                ("c".to_string(), 3),
            ]
        );
        assert_eq!(c.freed, 106);
    }

    #[test]
    fn maximum_age_after_the_collector_ran_that_long() {
        let p = Policy {
            max_age: Duration::from_secs(3600),
            ..Default::default()
        };
        let mut images = vec![
            image("stale", &["a"], 0, Some(100)),
            image("fresh", &["b"], 0, Some(4000)),
            image("never", &["c"], 0, None),
            image("busy", &["d"], 0, None),
        ];
        images[3].in_use = true;
        // The collector began at 0: nothing before an hour has passed.
        assert!(old_images(&p, &images, t(3600), t(0)).is_empty());
        assert_eq!(old_images(&p, &images, t(4000), t(0)), ["never", "stale"]);
        assert!(old_images(&Policy::default(), &images, t(9999), t(0)).is_empty());
    }

    #[test]
    fn detection_tracks_first_seen_last_used_and_forgets_removed_images() {
        let mut r = Records::default();
        let busy: HashSet<String> = ["x".to_string()].into();
        r.detect(["x", "y"], &busy, t(0));
        r.detect(["x", "y"], &HashSet::new(), t(10));
        assert_eq!(r.0["x"].first_detected, t(0));
        assert_eq!(r.0["x"].last_used, Some(t(0)));
        assert_eq!(r.0["y"].last_used, None);
        r.detect(["y"], &busy, t(20));
        assert!(!r.0.contains_key("x"));
    }
}
