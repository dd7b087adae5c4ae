//! GeoIP on a running server (`traffix geoip update` and `status` through the admin socket):
//! load the databases that changed, and say what is in use. Both need the live server: with
//! none running there is nothing to reload, and the databases load at its next start.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AdminCtx, AdminError, Command, Live};
use crate::geoip::{GeoipStatus, Kind};

/// Loads the GeoIP files that changed and looks up the countries of online nodes again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeoipReload {}

/// The GeoIP databases the running server uses, and the state of their updates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeoipShow {}

/// What a reload did, and what is in use now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GeoipReloadView {
    /// The databases swapped in (`country`, `asn`).
    pub changed: Vec<Kind>,
    /// Files that could not be used; the database loaded before stays in use.
    pub errors: Vec<String>,
    pub status: GeoipStatus,
}

fn live(ctx: &AdminCtx) -> Result<&Live, AdminError> {
    ctx.live.as_ref().ok_or_else(|| {
        AdminError::new("not_running", "no server is running: it loads the GeoIP databases when it starts")
    })
}

impl Command for GeoipReload {
    type Output = GeoipReloadView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<GeoipReloadView, AdminError> {
        let l = live(ctx)?;
        let r = (l.geoip_reload)();
        Ok(GeoipReloadView { changed: r.changed, errors: r.errors, status: (l.geoip_status)() })
    }
}

impl Command for GeoipShow {
    type Output = GeoipStatus;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<GeoipStatus, AdminError> {
        Ok((live(ctx)?.geoip_status)())
    }
}
