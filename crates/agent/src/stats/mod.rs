//! Resource usage of the node, its pods and their containers, as the kubelet's
//! `/stats/summary` and `/metrics/resource` report it: a sampler reads the cgroups
//! ([`cgroup`]) and `/proc` every [`SAMPLE_INTERVAL`] and keeps the last two readings of
//! each, so that a CPU rate (`usageNanoCores`) is the usage between them, as cAdvisor's
//! housekeeping gives the kubelet. Knows nothing of the API or of how pods are run: the
//! caller says which cgroups belong to which pod and container ([`Target`]).

pub mod cgroup;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use cgroup::Counters;

/// How often the sampler reads the counters; the rate is over this window. The API
/// server's `metrics.k8s.io` reports it as each metric's `window`
/// ([`skiff_api::defaults::METRICS_WINDOW`]).
pub const SAMPLE_INTERVAL: Duration = skiff_api::defaults::METRICS_WINDOW;

/// A pod whose cgroups are sampled.
#[derive(Debug, Clone)]
pub struct Target {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The pod's cgroup (parent of its containers').
    pub cgroup: String,
    /// Its running containers.
    pub containers: Vec<ContainerTarget>,
}

/// A running container whose cgroup is sampled.
#[derive(Debug, Clone)]
pub struct ContainerTarget {
    /// Container name.
    pub name: String,
    /// Its cgroup (`/skiff/<node>/pod<uid>/<id>`).
    pub cgroup: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was read.
    pub time: DateTime<Utc>,
    /// What was read.
    pub counters: Counters,
}

/// The last two readings of one cgroup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Series {
    /// The reading before `last`.
    pub prev: Option<Sample>,
    /// The latest reading.
    pub last: Sample,
}

impl Series {
    fn push(old: Option<Series>, s: Sample) -> Series {
        Series {
            prev: old.map(|o| o.last),
            last: s,
        }
    }

    /// CPU usage between the two readings in nanocores (billionths of a core); None
    /// before the second reading, or when the counter went back (a new cgroup).
    pub fn nano_cores(&self) -> Option<u64> {
        let prev = self.prev?;
        let dt = (self.last.time - prev.time).num_nanoseconds()?;
        if dt <= 0 || self.last.counters.cpu_ns < prev.counters.cpu_ns {
            return None;
        }
        let used = (self.last.counters.cpu_ns - prev.counters.cpu_ns) as u128;
        Some((used * 1_000_000_000 / dt as u128) as u64)
    }
}

#[derive(Debug, Clone)]
struct PodState {
    target: Target,
    pod: Option<Series>,
    containers: Vec<(ContainerTarget, Series)>,
}

#[derive(Debug, Default)]
struct State {
    node: Option<Series>,
    memory_capacity: u64,
    /// By cgroup path, so that a container keeps its history across samples.
    series: HashMap<String, Series>,
    pods: Vec<PodState>,
}

/// The sampled usage of one node.
#[derive(Debug)]
pub struct Stats {
    node_name: String,
    start_time: DateTime<Utc>,
    state: Mutex<State>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn cpu_json(s: &Series) -> Value {
    let mut v = json!({
        "time": ts(s.last.time),
        "usageCoreNanoSeconds": s.last.counters.cpu_ns,
    });
    if let Some(n) = s.nano_cores() {
        v["usageNanoCores"] = json!(n);
    }
    v
}

fn memory_json(s: &Series, capacity: Option<u64>) -> Value {
    let m = s.last.counters.memory;
    let mut v = json!({
        "time": ts(s.last.time),
        "usageBytes": m.usage,
        "workingSetBytes": m.working_set,
        "rssBytes": m.rss,
    });
    if let Some(c) = capacity {
        v["availableBytes"] = json!(c.saturating_sub(m.working_set));
    }
    v
}

impl Stats {
    /// Empty statistics of node `node_name`, started at `start_time`.
    pub fn new(node_name: &str, start_time: DateTime<Utc>) -> Stats {
        Stats {
            node_name: node_name.to_string(),
            start_time,
            state: Mutex::new(State::default()),
        }
    }

    /// Takes one reading of the node (`node`: its counters and memory capacity) and of
    /// the `targets`' cgroups under `root`, at `now`. Cgroups no longer named are
    /// forgotten.
    pub fn record(
        &self,
        now: DateTime<Utc>,
        node: Option<(Counters, u64)>,
        root: &Path,
        targets: Vec<Target>,
    ) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((counters, capacity)) = node {
            st.node = Some(Series::push(
                st.node,
                Sample {
                    time: now,
                    counters,
                },
            ));
            st.memory_capacity = capacity;
        }
        let mut series = HashMap::new();
        let mut pods = Vec::new();
        let read = |path: &str, series: &mut HashMap<String, Series>| {
            let counters = cgroup::read_cgroup(root, path)?;
            let s = Series::push(
                st.series.get(path).copied(),
                Sample {
                    time: now,
                    counters,
                },
            );
            series.insert(path.to_string(), s);
            Some(s)
        };
        for t in targets {
            let pod = read(&t.cgroup, &mut series);
            let containers = t
                .containers
                .iter()
                .filter_map(|c| read(&c.cgroup, &mut series).map(|s| (c.clone(), s)))
                .collect();
            pods.push(PodState {
                target: t,
                pod,
                containers,
            });
        }
        st.series = series;
        st.pods = pods;
    }

    /// The kubelet's `/stats/summary` (`k8s.io/kubelet/pkg/apis/stats/v1alpha1.Summary`):
    /// the node's and each pod's and container's CPU and memory.
    pub fn summary(&self) -> Value {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut node = json!({
            "nodeName": self.node_name,
            "startTime": ts(self.start_time),
        });
        if let Some(s) = &st.node {
            node["cpu"] = cpu_json(s);
            node["memory"] = memory_json(s, Some(st.memory_capacity));
        }
        let pods: Vec<Value> = st
            .pods
            .iter()
            .map(|p| {
                let containers: Vec<Value> = p
                    .containers
                    .iter()
                    .map(|(c, s)| {
                        json!({
                            "name": c.name,
                            "startTime": ts(c.started_at),
                            "cpu": cpu_json(s),
                            "memory": memory_json(s, None),
                        })
                    })
                    .collect();
                let start = p
                    .target
                    .containers
                    .iter()
                    .map(|c| c.started_at)
                    .min()
                    .unwrap_or(self.start_time);
                let mut v = json!({
                    "podRef": {"name": p.target.name, "namespace": p.target.namespace,
                               "uid": p.target.uid},
                    "startTime": ts(start),
                    "containers": containers,
                });
                if let Some(s) = &p.pod {
                    v["cpu"] = cpu_json(s);
                    v["memory"] = memory_json(s, None);
                }
                v
            })
            .collect();
        json!({"node": node, "pods": pods})
    }

    /// The kubelet's `/metrics/resource` in the Prometheus text format: cumulative CPU
    /// seconds and working sets with the time of their reading (milliseconds), what
    /// metrics-server scrapes.
    pub fn resource_metrics(&self) -> String {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        let secs = |ns: u64| ns as f64 / 1e9;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            out.push_str(&format!(
                "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}\n"
            ));
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        };
        let labels = |p: &PodState, c: Option<&str>| match c {
            Some(c) => format!(
                "{{container=\"{c}\",namespace=\"{}\",pod=\"{}\"}}",
                p.target.namespace, p.target.name
            ),
            None => format!(
                "{{namespace=\"{}\",pod=\"{}\"}}",
                p.target.namespace, p.target.name
            ),
        };
        let each_container = |f: &dyn Fn(&PodState, &ContainerTarget, &Series) -> String| {
            st.pods
                .iter()
                .flat_map(|p| p.containers.iter().map(move |(c, s)| (p, c, s)))
                .map(|(p, c, s)| f(p, c, s))
                .collect::<Vec<_>>()
        };
        family(
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the container in core-seconds",
            each_container(&|p, c, s| {
                format!(
                    "container_cpu_usage_seconds_total{} {} {}",
                    labels(p, Some(&c.name)),
                    secs(s.last.counters.cpu_ns),
                    ms(s.last.time)
                )
            }),
        );
        family(
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set of the container in bytes",
            each_container(&|p, c, s| {
                format!(
                    "container_memory_working_set_bytes{} {} {}",
                    labels(p, Some(&c.name)),
                    s.last.counters.memory.working_set,
                    ms(s.last.time)
                )
            }),
        );
        family(
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds",
            each_container(&|p, c, s| {
                format!(
                    "container_start_time_seconds{} {} {}",
                    labels(p, Some(&c.name)),
                    c.started_at.timestamp_millis() as f64 / 1e3,
                    ms(s.last.time)
                )
            }),
        );
        let node = st.node.iter().collect::<Vec<_>>();
        family(
            "node_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the node in core-seconds",
            node.iter()
                .map(|s| {
                    format!(
                        "node_cpu_usage_seconds_total {} {}",
                        secs(s.last.counters.cpu_ns),
                        ms(s.last.time)
                    )
                })
                .collect(),
        );
        family(
            "node_memory_working_set_bytes",
            "gauge",
            "Current working set of the node in bytes",
            node.iter()
                .map(|s| {
                    format!(
                        "node_memory_working_set_bytes {} {}",
                        s.last.counters.memory.working_set,
                        ms(s.last.time)
                    )
                })
                .collect(),
        );
        let pods = |f: &dyn Fn(&PodState, &Series) -> String| {
            st.pods
                .iter()
                .filter_map(|p| p.pod.as_ref().map(|s| f(p, s)))
                .collect::<Vec<_>>()
        };
        family(
            "pod_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the pod in core-seconds",
            pods(&|p, s| {
                format!(
                    "pod_cpu_usage_seconds_total{} {} {}",
                    labels(p, None),
                    secs(s.last.counters.cpu_ns),
                    ms(s.last.time)
                )
            }),
        );
        family(
            "pod_memory_working_set_bytes",
            "gauge",
            "Current working set of the pod in bytes",
            pods(&|p, s| {
                format!(
                    "pod_memory_working_set_bytes{} {} {}",
                    labels(p, None),
                    s.last.counters.memory.working_set,
                    ms(s.last.time)
                )
            }),
        );
        family(
            "resource_scrape_error",
            "gauge",
            "1 if there was an error while getting container metrics, 0 otherwise",
            vec!["resource_scrape_error 0".into()],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cgroup::Memory;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time")
    }

    fn sample(secs: i64, cpu_ns: u64) -> Sample {
        Sample {
            time: at(secs),
            counters: Counters {
                cpu_ns,
                memory: Memory::default(),
            },
        }
    }

    #[test]
    fn cpu_rate_is_the_usage_between_the_last_two_readings() {
        let first = Series::push(None, sample(0, 1_000_000_000));
        assert_eq!(first.nano_cores(), None);
        // Half a core for 10 s: 5 s of CPU.
        let second = Series::push(Some(first), sample(10, 6_000_000_000));
        assert_eq!(second.nano_cores(), Some(500_000_000));
        // Two cores for 2 s.
        let third = Series::push(Some(second), sample(12, 10_000_000_000));
        assert_eq!(third.nano_cores(), Some(2_000_000_000));
        // A counter that went back (a new cgroup of the same path) gives no rate.
        let reset = Series::push(Some(third), sample(22, 5));
        assert_eq!(reset.nano_cores(), None);
        // No time between readings.
        let same = Series::push(Some(reset), sample(22, 50));
        assert_eq!(same.nano_cores(), None);
    }

    #[test]
    fn summary_and_resource_metrics_of_a_pod() {
        let root = tempfile::tempdir().expect("tmp");
        for (dir, cpu) in [
            ("skiff/n1/podu1", "3000000000"),
            ("skiff/n1/podu1/c1", "2000000000"),
        ] {
            let cpu_dir = root.path().join("cpuacct").join(dir);
            std::fs::create_dir_all(&cpu_dir).expect("mkdir");
            std::fs::write(cpu_dir.join("cpuacct.usage"), cpu).expect("write");
            let mem_dir = root.path().join("memory").join(dir);
            std::fs::create_dir_all(&mem_dir).expect("mkdir");
            std::fs::write(mem_dir.join("memory.usage_in_bytes"), "2048").expect("write");
            std::fs::write(mem_dir.join("memory.stat"), "total_inactive_file 1024\n")
                .expect("write");
        }
        let stats = Stats::new("n1", at(-100));
        let target = Target {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u1".into(),
            cgroup: "/skiff/n1/podu1".into(),
            containers: vec![ContainerTarget {
                name: "c1".into(),
                cgroup: "/skiff/n1/podu1/c1".into(),
                started_at: at(-50),
            }],
        };
        let node = |cpu_ns| {
            Some((
                Counters {
                    cpu_ns,
                    memory: Memory {
                        usage: 10,
                        working_set: 8,
                        rss: 4,
                    },
                },
                100,
            ))
        };
        stats.record(
            at(0),
            node(1_000_000_000),
            root.path(),
            vec![target.clone()],
        );
        let s = stats.summary();
        assert!(s["pods"][0]["containers"][0]["cpu"]
            .get("usageNanoCores")
            .is_none());
        std::fs::write(
            root.path().join("cpuacct/skiff/n1/podu1/c1/cpuacct.usage"),
            "4500000000",
        )
        .expect("write");
        stats.record(at(10), node(11_000_000_000), root.path(), vec![target]);
        let s = stats.summary();
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["cpu"]["usageNanoCores"], 1_000_000_000u64);
        assert_eq!(s["node"]["memory"]["availableBytes"], 92);
        let c = &s["pods"][0]["containers"][0];
        assert_eq!(c["name"], "c1");
        assert_eq!(c["cpu"]["usageNanoCores"], 250_000_000u64);
        assert_eq!(c["cpu"]["usageCoreNanoSeconds"], 4_500_000_000u64);
        assert_eq!(c["memory"]["workingSetBytes"], 1024);
        assert_eq!(c["startTime"], "2023-11-14T22:12:30Z");
        assert_eq!(s["pods"][0]["podRef"]["uid"], "u1");
        let m = stats.resource_metrics();
        assert!(
            m.contains(
                "container_cpu_usage_seconds_total{container=\"c1\",namespace=\"ns\",pod=\"p\"} 4.5 1700000010000\n"
            ),
            "{m}"
        );
        assert!(
            m.contains("node_memory_working_set_bytes 8 1700000010000\n"),
            "{m}"
        );
        assert!(
            m.contains("pod_memory_working_set_bytes{namespace=\"ns\",pod=\"p\"} 1024"),
            "{m}"
        );
        // A pod no longer named is forgotten.
        stats.record(at(20), None, root.path(), vec![]);
        assert_eq!(stats.summary()["pods"], json!([]));
    }
}
