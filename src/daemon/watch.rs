//! A core task that ends before shutdown is a failure the binary acts on.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Marks a core task: if it ends (or panics) before shutdown, `died` fires.
pub(super) struct Watch {
    pub(super) name: &'static str,
    pub(super) shutdown: CancellationToken,
    pub(super) died: CancellationToken,
}

impl Watch {
    pub(super) fn spawn(
        self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let _watch = self;
            task.await;
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.shutdown.is_cancelled() {
            tracing::error!("internal task '{}' stopped unexpectedly", self.name);
            self.died.cancel();
        }
    }
}
