//! [`KillOnDrop`]: for tests that run a service's real binary.

/// Kills the child process if the test fails half-way, so no server outlives the test.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
