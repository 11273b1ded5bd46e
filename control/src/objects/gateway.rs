//! Gateway API `Gateway` (gateway.networking.k8s.io/v1): the fields a waypoint needs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A Gateway; a waypoint when its class is `istio-waypoint`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Gateway {
    /// Metadata (labels carry `istio.io/waypoint-for`).
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: GatewaySpec,
    /// Status written by the controller (addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

/// `spec` of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// `istio-waypoint` for waypoints.
    pub gateway_class_name: String,
    /// Listeners; a waypoint has `{name: mesh, port: 15008, protocol: HBONE}`.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// One listener of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Listener name.
    #[serde(default)]
    pub name: String,
    /// Port.
    pub port: u16,
    /// Protocol (`HBONE` for waypoints).
    #[serde(default)]
    pub protocol: String,
}

/// `status` of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses the gateway is reachable at.
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
}

/// One address in a Gateway's status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    /// `IPAddress` or `Hostname`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The address.
    pub value: String,
}
