//! Unit tests of the CRD rules: defaults, validation of the CRD with kube's messages,
//! naming conflicts, the served resources, and the schema applied to objects.

use serde_json::{json, Value};

use super::*;
use crate::crd::schema;

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "string", "enum": ["S", "M", "L"]},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5, "minLength": 2},
                        "port": {"x-kubernetes-int-or-string": true},
                        "when": {"type": "string", "format": "date-time"},
                        "note": {"type": "string", "nullable": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
                    }},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                }}}
            }]
        }
    })
}

fn msgs(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn defaults_fill_singular_list_kind_and_conversion() {
    let mut c = crd();
    default_crd(&mut c);
    assert_eq!(c["spec"]["names"]["singular"], "widget");
    assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(c["spec"]["conversion"]["strategy"], "None");
    assert!(
        validate_crd(&c, None).is_empty(),
        "{:?}",
        validate_crd(&c, None)
    );
}

#[test]
fn crd_rules_have_kube_messages() {
    let mut c = crd();
    default_crd(&mut c);
    c["metadata"]["name"] = json!("gadgets.example.com");
    c["spec"]["scope"] = json!("Galaxy");
    c["spec"]["versions"][0]["storage"] = json!(false);
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["bad"] = json!({"properties": {}});
    let m = msgs(&validate_crd(&c, None));
    assert!(m.contains(&"metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group".to_string()), "{m:?}");
    assert!(m.contains(&"spec.scope: Unsupported value: \"Galaxy\": supported values: \"Cluster\", \"Namespaced\"".to_string()), "{m:?}");
    assert!(
        m.iter()
            .any(|x| x.starts_with("spec.versions: Invalid value")
                && x.ends_with("must have exactly one version marked as storage version")),
        "{m:?}"
    );
    assert!(m.contains(&"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[bad].type: Required value: must not be empty for specified object fields".to_string()), "{m:?}");

    let mut c = crd();
    default_crd(&mut c);
    c["spec"]["versions"][0]["schema"] = json!({"openAPIV3Schema": {"type": "string"}});
    let m = msgs(&validate_crd(&c, None));
    assert!(m.contains(&"spec.versions[0].schema.openAPIV3Schema.type: Invalid value: \"string\": must be object at the root".to_string()), "{m:?}");
    c["spec"]["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("schema");
    let m = msgs(&validate_crd(&c, None));
    assert!(
        m.contains(
            &"spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
                .to_string()
        ),
        "{m:?}"
    );
    c["spec"]["group"] = json!("nodot");
    c["metadata"]["name"] = json!("widgets.nodot");
    let m = msgs(&validate_crd(&c, None));
    assert!(
        m.contains(
            &"spec.group: Invalid value: \"nodot\": should be a domain with at least one dot"
                .to_string()
        ),
        "{m:?}"
    );
}

#[test]
fn metadata_in_schema_may_only_restrict_the_name() {
    let mut c = crd();
    default_crd(&mut c);
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"] =
        json!({"type": "object", "properties": {"labels": {"type": "object"}}});
    let m = msgs(&validate_crd(&c, None));
    assert!(m.iter().any(|x| x.contains("properties[metadata]: Forbidden: must not specify anything other than name and generateName")), "{m:?}");
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"] =
        json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}});
    assert!(validate_crd(&c, None).is_empty());
}

#[test]
fn served_resources_follow_accepted_names() {
    let mut c = crd();
    default_crd(&mut c);
    assert!(
        served(&c).is_empty(),
        "nothing served before the names are accepted"
    );
    c["status"] = json!({"acceptedNames": c["spec"]["names"].clone()});
    let rs = served(&c);
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!(
        (r.group, r.version, r.kind, r.plural, r.singular),
        ("example.com", "v1", "Widget", "widgets", "widget")
    );
    assert!(r.namespaced);
    assert_eq!(r.short_names, &["wd"]);
    assert_eq!(r.categories, &["all"]);
    assert_eq!(r.subresources, &["scale", "status"]);
    let custom = r.custom.expect("custom");
    assert_eq!(
        custom.scale.as_ref().map(|s| s.spec_replicas.as_str()),
        Some(".spec.replicas")
    );
    // The same definition interns to the same leaked data.
    assert!(std::ptr::eq(custom, served(&c)[0].custom.unwrap()));
}

#[test]
fn name_conflicts_are_reported() {
    let mut a = crd();
    default_crd(&mut a);
    a["status"] = json!({"acceptedNames": a["spec"]["names"].clone()});
    let mut b = crd();
    default_crd(&mut b);
    b["metadata"]["name"] = json!("widgets2.example.com");
    b["spec"]["names"]["plural"] = json!("widgets2");
    b["spec"]["names"]["singular"] = json!("widget2");
    let mut a_singular = b.clone();
    a_singular["spec"]["names"]["singular"] = json!("widget");
    assert_eq!(
        names_conflict(&a_singular, &[&a]),
        Err(("SingularConflict", "\"widget\" is already in use".into()))
    );
    assert_eq!(
        names_conflict(&b, &[&a]),
        Err(("ShortNamesConflict", "\"wd\" is already in use".into()))
    );
    b["spec"]["names"]["shortNames"] = json!([]);
    assert_eq!(
        names_conflict(&b, &[&a]),
        Err(("KindConflict", "\"Widget\" is already in use".into()))
    );
    b["spec"]["names"]["kind"] = json!("Widget2");
    b["spec"]["names"]["listKind"] = json!("Widget2List");
    assert_eq!(names_conflict(&b, &[&a]), Ok(()));
}

fn schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn objects_are_validated_with_kube_openapi_messages() {
    let s = schema();
    let ok = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
                    "spec": {"size": "M", "replicas": 3, "port": "http", "note": null,
                             "when": "2024-01-01T00:00:00Z", "labels": {"a": "b"},
                             "template": {"apiVersion": "v1", "kind": "Pod"}}});
    assert!(
        schema::validate(&s, &ok).is_empty(),
        "{:?}",
        schema::validate(&s, &ok)
    );
    let bad = json!({"spec": {"size": "XL", "replicas": "three", "name": "ABCDEFG", "port": 1.5,
                              "when": "yesterday", "tags": ["a", "b", "c"], "labels": {"a": 1},
                              "template": {"kind": "Pod"}}});
    let m = msgs(&schema::validate(&s, &bad));
    for want in [
        "spec.size: Unsupported value: \"XL\": supported values: \"S\", \"M\", \"L\"",
        "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        "spec.name: Too long: may not be more than 5 bytes",
        "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
        "spec.port: Invalid value: \"number\": spec.port in body must be of type integer-or-string: \"number\"",
        "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
        "spec.tags: Too many: 3: must have at most 2 items",
        "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
        "spec.template.apiVersion: Required value: must not be empty",
    ] {
        assert!(m.contains(&want.to_string()), "missing {want:?} in {m:?}");
    }
    let m = msgs(&schema::validate(&s, &json!({"spec": {"replicas": 0}})));
    assert!(
        m.contains(&"spec.size: Required value".to_string()),
        "{m:?}"
    );
    assert!(m.contains(&"spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1".to_string()), "{m:?}");
    let m = msgs(&schema::validate(
        &s,
        &json!({"spec": {"size": "S", "name": null}}),
    ));
    assert!(m.contains(&"spec.name: Invalid value: \"null\": spec.name in body must be of type string: \"null\"".to_string()), "{m:?}");
}

#[test]
fn pruning_drops_undeclared_fields_but_keeps_preserved_ones() {
    let s = schema();
    let mut o = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a", "labels": {"x": "y"}},
                       "spec": {"size": "S", "bogus": 1, "extra": {"anything": {"deep": true}},
                                "template": {"apiVersion": "v1", "kind": "Pod", "spec": {}}},
                       "top": 1});
    let dropped = schema::prune(&s, &mut o);
    assert_eq!(dropped, vec![".spec.bogus", ".top"]);
    assert_eq!(o["spec"]["extra"]["anything"]["deep"], true);
    assert_eq!(o["metadata"]["labels"]["x"], "y");
    assert!(o["spec"]["template"]["spec"].is_object());
}

#[test]
fn defaults_apply_top_down() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
        "properties": {"replicas": {"type": "integer", "default": 1},
                       "inner": {"type": "object", "properties": {"x": {"type": "string", "default": "d"}}}}}}});
    let mut o = json!({"metadata": {"name": "a"}});
    schema::apply_defaults(&s, &mut o);
    assert_eq!(o["spec"]["replicas"], 1);
    assert!(o["spec"].get("inner").is_none());
    let mut o = json!({"spec": {"replicas": 5, "inner": {}}});
    schema::apply_defaults(&s, &mut o);
    assert_eq!(o["spec"]["replicas"], 5);
    assert_eq!(o["spec"]["inner"]["x"], "d");
}

#[test]
fn tables_show_printer_columns() {
    let mut c = crd();
    default_crd(&mut c);
    c["status"] = json!({"acceptedNames": c["spec"]["names"].clone()});
    let info = served(&c).remove(0);
    let o = json!({"metadata": {"name": "w1", "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"replicas": 3}});
    let t = crate::table(&info, &[o], crate::IncludeObject::None, chrono::Utc::now());
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Replicas"]);
    assert_eq!(t["rows"][0]["cells"], json!(["w1", 3]));
}

#[test]
fn selectable_fields_are_checked_as_kube_does_and_served() {
    let mut c = crd();
    default_crd(&mut c);
    c["spec"]["versions"][0]["selectableFields"] = json!([
        {"jsonPath": ".spec.size"},
        {"jsonPath": ".spec.replicas"},
        {"jsonPath": ".spec.tags"},
        {"jsonPath": ".metadata.name"},
        {"jsonPath": ".spec.nothere"},
        {"jsonPath": "spec.size"},
        {"jsonPath": ".spec.size"},
        {"jsonPath": ""}
    ]);
    let p = "spec.versions[0].selectableFields";
    assert_eq!(
        msgs(&validate_crd(&c, None)),
        [
            format!("{p}[2].jsonPath: Invalid value: \".spec.tags\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."),
            format!("{p}[3].jsonPath: Invalid value: \".metadata.name\": is an invalid path: does not refer to a valid field"),
            format!("{p}[4].jsonPath: Invalid value: \".spec.nothere\": is an invalid path: does not refer to a valid field"),
            format!("{p}[5].jsonPath: Invalid value: \"spec.size\": is an invalid path: expected [ or . but got: spec"),
            format!("{p}[6].jsonPath: Duplicate value: \".spec.size\""),
            format!("{p}[7].jsonPath: Required value"),
        ]
    );
    c["spec"]["versions"][0]["selectableFields"] =
        json!([{"jsonPath": ".spec.size"}, {"jsonPath": ".spec.replicas"}]);
    assert!(validate_crd(&c, None).is_empty());
    c["status"] = json!({"acceptedNames": {"plural": "widgets", "kind": "Widget"}});
    let served = served(&c);
    assert_eq!(
        served[0].custom.map(|c| c.selectable.clone()),
        Some(vec!["spec.size".to_string(), "spec.replicas".to_string()])
    );
}
