//! `kubectl explain` shows the schema's descriptions: every user-facing field must have one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray,
};

fn undocumented(path: &str, props: &JSONSchemaProps, out: &mut Vec<String>) {
    for (name, child) in props.properties.iter().flatten() {
        let p = format!("{path}.{name}");
        if child.description.as_deref().is_none_or(str::is_empty) {
            out.push(p.clone());
        }
        undocumented(&p, child, out);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &props.items {
        undocumented(&format!("{path}[]"), items, out);
    }
}

#[test]
fn every_field_has_a_description() {
    let mut missing = Vec::new();
    for crd in keystone_types::crds() {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema");
        for top in ["spec", "status"] {
            let props = &schema.properties.as_ref().expect("properties")[top];
            undocumented(&format!("{}.{top}", crd.spec.names.kind), props, &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description (kubectl explain shows nothing): {missing:#?}"
    );
}
