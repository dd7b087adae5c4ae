//! The web listener's certificate (`traffix tls status|renew`): what is served, ACME's state,
//! and asking for an ACME attempt now. Both need the running server (`Live::certificates`);
//! the CLI reads the files itself when no server runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AdminCtx, AdminError, Audit, Command};
use crate::acme::CertificateView;

/// How long `tls renew` waits for the CA: one issuance's deadline, less than the admin socket's.
const RENEW_WAIT: Duration = Duration::from_secs(120);

/// The certificate served and ACME's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsStatus {}

/// An ACME attempt now, whatever the schedule says; answers once it has ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsRenew {}

fn certificates(ctx: &AdminCtx) -> Result<std::sync::Arc<crate::acme::Certificates>, AdminError> {
    ctx.live.as_ref().and_then(|l| l.certificates.clone()).ok_or_else(|| {
        AdminError::new("locked", "the server is not running: the certificate is renewed by `traffix serve`")
    })
}

impl Command for TlsStatus {
    type Output = CertificateView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<CertificateView, AdminError> {
        Ok(certificates(ctx)?.view())
    }
}

impl Command for TlsRenew {
    type Output = CertificateView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("tls.renew", "certificate"))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<CertificateView, AdminError> {
        let certs = certificates(ctx)?;
        // Commands run on the blocking pool, inside the runtime: wait for the service there.
        let rt = tokio::runtime::Handle::try_current().map_err(|e| AdminError::new("internal", e.to_string()))?;
        rt.block_on(certs.renew(RENEW_WAIT)).map_err(|e| AdminError::new("invalid", e))
    }
}
