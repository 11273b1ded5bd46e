//! `control_objects`: Kubernetes YAML as `meshctl local apply` and control's file source read it,
//! through parsing and translation into proxy resources. Besides "no panic" it checks that the
//! index is a function of its objects: the same objects applied all at once, one by one, in the
//! reverse order, or deleted and added back give the same resources, and deleting everything
//! gives what an empty index has. Control applies watch events one at a time in whatever order
//! the API server sends them, so an order-dependent result is a stale proxy config.

use std::collections::BTreeMap;

use mesh_control::index::{Change, Index};
use mesh_control::objects::{Object, parse_documents};
use mesh_control::translate::Options;

/// Parses `data` as multi-document YAML and checks the index over its objects.
pub fn control_objects(data: &[u8]) {
    control_resources(data);
}

/// [`control_objects`], returning how many resources the objects gave beyond an empty index's.
pub fn control_resources(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let Ok(objects) = parse_documents(text) else {
        return 0;
    };
    // Later duplicates of a key replace earlier ones, as in a watch; keep the last of each.
    let mut seen = std::collections::BTreeSet::new();
    let mut unique: Vec<Object> = objects
        .into_iter()
        .rev()
        .filter(|o| seen.insert(o.key()))
        .collect();
    unique.reverse();

    let mut batch = Index::new(Options::default());
    batch.replace_all(unique.clone());
    let expected = resources(&batch);
    let empty = resources(&Index::new(Options::default()));

    let mut one_by_one = Index::new(Options::default());
    for o in &unique {
        one_by_one.apply([Change::Upsert(o.clone())]);
    }
    assert_same(&expected, &resources(&one_by_one), "applied one by one");

    let mut reversed = Index::new(Options::default());
    for o in unique.iter().rev() {
        reversed.apply([Change::Upsert(o.clone())]);
    }
    assert_same(&expected, &resources(&reversed), "applied in reverse order");

    // Delete every other object, then add them back.
    let gone: Vec<&Object> = unique.iter().step_by(2).collect();
    batch.apply(gone.iter().map(|o| Change::Delete(o.key())));
    batch.apply(gone.iter().map(|o| Change::Upsert((*o).clone())));
    assert_same(&expected, &resources(&batch), "half deleted and added back");

    batch.apply(unique.iter().map(|o| Change::Delete(o.key())));
    assert_same(&empty, &resources(&batch), "every object deleted");
    expected.len().saturating_sub(empty.len())
}

/// Name and content hash of every resource.
fn resources(index: &Index) -> BTreeMap<String, u64> {
    index
        .resources()
        .map(|(name, entry)| (name.clone(), entry.hash))
        .collect()
}

fn assert_same(expected: &BTreeMap<String, u64>, got: &BTreeMap<String, u64>, how: &str) {
    if expected == got {
        return;
    }
    let differ: Vec<&String> = expected
        .keys()
        .chain(got.keys())
        .filter(|k| expected.get(*k) != got.get(*k))
        .collect();
    panic!("the objects {how} gave other resources than all at once: {differ:?}");
}
