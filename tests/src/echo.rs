//! The echo application of the end-to-end tests (`mesh-echo`) is `meshctl echo`'s library
//! (DESIGN.md 7): HTTP/1.1 + h2c + gRPC JSON echo, plus a TCP echo in [`tcp`]. Re-exported here
//! so that the tests keep one implementation under their usual path.

pub use meshctl::echo::*;
