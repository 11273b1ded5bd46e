//! Label selectors (`selector: {matchLabels: {...}}`) shared by the policy kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FieldError;
use super::names;

/// Istio `WorkloadSelector`: a workload matches when it carries every listed label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must all carry with these values. Empty selects every workload.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl WorkloadSelector {
    /// Whether `labels` carries every label of the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
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
