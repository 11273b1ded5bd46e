//! The waypoint deployer (DESIGN.md 5): for every Gateway of class `istio-waypoint`, a ServiceAccount, Deployment
//! and Service named after it ([`render`], pure), server-side applied by [`apply`] with the Gateway as owner, and
//! the Gateway's `status` (addresses, Accepted/Programmed) written back ([`status`], pure), and the status of
//! HTTPRoutes/GRPCRoutes ([`routes`], pure).

pub mod apply;
pub mod render;
pub mod routes;
pub mod status;

pub use render::{DeployerOptions, WaypointObjects, waypoint_objects};
