//! Label selectors (`selector: {matchLabels: {...}}`) shared by the policy kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names;
use super::{FieldError, LabelLookup};

/// Istio `WorkloadSelector`: a workload matches when it carries every listed label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must all carry with these values. Empty selects every workload.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl WorkloadSelector {
    /// Whether `labels` (a workload's [`super::Labels`] or a map) carries every label of the selector.
    pub fn matches<L: LabelLookup + ?Sized>(&self, labels: &L) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.label(k) == Some(v.as_str()))
    }

    /// Checks label keys and values; errors name `matchLabels` under the caller's path.
    pub fn validate(&self) -> Result<(), FieldError> {
        names::validate_labels(&self.match_labels).map_err(|e| e.under("matchLabels"))
    }

    /// `None` for an absent or empty selector: Istio treats both as "no selector".
    pub fn non_empty(selector: Option<Self>) -> Option<Self> {
        selector.filter(|s| !s.match_labels.is_empty())
    }
}
