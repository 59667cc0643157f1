use std::sync::{Arc, RwLock};

/// What `/healthz` reports. Starts unhealthy ("starting"); the service marks itself
/// healthy once its connections are up, and unhealthy with a reason when it loses one.
#[derive(Debug, Clone)]
pub struct Health(Arc<RwLock<Option<String>>>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Some("starting".into()))))
    }
}

impl Health {
    pub fn set_healthy(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn set_unhealthy(&self, reason: impl Into<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
    }

    /// `Ok(())` when healthy, else the reason.
    pub fn status(&self) -> Result<(), String> {
        match &*self.0.read().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }
}
