//! The docs that are written by hand stay true to the manifests: every feature of the facade
//! has a row in the feature tables of both READMEs, and no row names a feature that does not
//! exist. (The crate docs' "Feature flags" sections are generated from the manifests by
//! `document-features`.)

use std::collections::BTreeSet;
use std::path::Path;

/// The feature names declared in `manifest`'s `[features]` table (except `default`).
fn manifest_features(manifest: &str) -> BTreeSet<String> {
    let mut features = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[features]";
            continue;
        }
        if !inside || line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if name != "default" {
                features.insert(name.to_owned());
            }
        }
    }
    features
}

/// The feature names in the first column of the `## Features` table of `readme`.
fn table_features(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## Features\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[expect(clippy::panic, reason = "a test helper fails its test")]
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn every_facade_feature_has_a_row_in_both_readmes_and_every_row_a_feature() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let features = manifest_features(&read(&root.join("distkit/Cargo.toml")));
    assert!(
        features.contains("counter") && features.contains("full"),
        "{features:?}"
    );
    for readme in ["README.md", "distkit/README.md"] {
        let rows = table_features(&read(&root.join(readme)));
        assert_eq!(
            rows, features,
            "{readme}: the feature table and distkit/Cargo.toml disagree"
        );
    }
}
