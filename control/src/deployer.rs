//! The waypoint deployer (DESIGN.md 5): for every Gateway of class `istio-waypoint`, a ServiceAccount, Deployment
//! and Service named after it ([`render`], pure), server-side applied by [`apply`] with the Gateway as owner, and
//! the Gateway's `status` (addresses, Accepted/Programmed) written back ([`status`], pure), and the status of
//! HTTPRoutes/GRPCRoutes ([`routes`], pure) and of the other L7 objects ([`istio`], pure: validation messages and
//! Warning Events for objects the waypoint would reject), written by [`report`] to the API server or, in local
//! mode, to a directory.

pub mod apply;
pub mod istio;
pub mod render;
pub mod report;
pub mod routes;
pub mod status;

pub use render::{ControlAccess, DeployerOptions, WaypointObjects, waypoint_objects};
