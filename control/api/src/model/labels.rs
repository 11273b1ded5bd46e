//! Workload labels in a compact form.
//!
//! A `BTreeMap<String, String>` allocates a whole B-tree node (eleven key/value slots, ~540 bytes)
//! for even one label; a ztunnel holds the labels of every workload of the cluster (DESIGN.md 4.5:
//! "keep the internal model compact"), so [`Labels`] keeps them as one exactly sized vector sorted by
//! key. It offers the read API of a map (`get`, `iter`, `contains_key`), serializes
//! as a map, and its `Debug` form is the map's.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Something label selectors can look labels up in: [`Labels`] or a `BTreeMap<String, String>`.
pub trait LabelLookup {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelLookup for Labels {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Labels of a workload: unique keys, sorted, in one allocation.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    fn position<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        String: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value of label `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&String>
    where
        String: Borrow<Q>,
    {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether label `key` is present.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        String: Borrow<Q>,
    {
        self.position(key).is_ok()
    }

    /// Sets label `key`; returns its previous value.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.position(key.as_str()) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes label `key`; returns its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<String>
    where
        String: Borrow<Q>,
    {
        self.position(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The labels in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &String)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Releases spare capacity (of the vector and of every string).
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
        for (k, v) in &mut self.0 {
            k.shrink_to_fit();
            v.shrink_to_fit();
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    /// Later entries win over earlier ones with the same key, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut v: Vec<(String, String)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Stable sort keeps equal keys in input order; keep the last of each.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        out.shrink_to_fit();
        Self(out)
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Labels {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k.into(), v.into());
        }
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already sorted and unique.
        Self(map.into_iter().collect())
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(labels: Labels) -> Self {
        labels.0.into_iter().collect()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_sorted_map() {
        let mut l: Labels = [("version", "v1"), ("app", "a"), ("app", "b")].into();
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("app").map(String::as_str), Some("b"), "last wins");
        assert_eq!(l.get("version").map(String::as_str), Some("v1"));
        assert_eq!(l.insert("tier".into(), "web".into()), None);
        assert_eq!(l.insert("app".into(), "c".into()), Some("b".to_string()));
        assert_eq!(l.keys().collect::<Vec<_>>(), ["app", "tier", "version"]);
        assert_eq!(l.remove("tier"), Some("web".to_string()));
        assert!(!l.contains_key("tier"));
        assert_eq!(format!("{l:?}"), r#"{"app": "c", "version": "v1"}"#);
        let map: BTreeMap<String, String> = l.clone().into();
        assert_eq!(
            format!("{map:?}"),
            format!("{l:?}"),
            "same Debug form as a map"
        );
        assert_eq!(Labels::from(map), l);
    }

    #[test]
    fn serializes_as_a_map() {
        let l: Labels = [("b", "2"), ("a", "1")].into();
        let json = serde_json::to_string(&l).expect("json");
        assert_eq!(json, r#"{"a":"1","b":"2"}"#);
        assert_eq!(serde_json::from_str::<Labels>(&json).expect("parse"), l);
        assert!(serde_json::from_str::<Labels>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn lookup_trait_sees_both_forms() {
        let l: Labels = [("app", "a")].into();
        let m: BTreeMap<String, String> = l.clone().into();
        assert_eq!(l.label("app"), m.label("app"));
        assert_eq!(l.label("x"), None);
    }
}
