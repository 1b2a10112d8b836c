//! Admin fields that concern the API key itself. Every admin field checks
//! the caller's key with [`crate::auth::require`].

use async_graphql::{Context, Object, SimpleObject};

use crate::auth::{self, Role};

#[derive(Default)]
pub struct AdminQuery;

/// The holder of the API key a request carries.
#[derive(SimpleObject)]
pub struct ApiKeyInfo {
    /// The key's name in the keys file.
    pub name: String,
    pub role: Role,
    /// Approval queues the key decides (reviewers).
    pub queues: Vec<String>,
    /// What the key may do, by the names denied calls use in their
    /// messages (`PUBLISH_FLOWS`, `DECIDE_APPROVAL(underwriter)`; an
    /// admin's approvals are `DECIDE_APPROVAL(*)`).
    pub permissions: Vec<String>,
}

#[Object]
impl AdminQuery {
    /// Who the `X-API-Key` of this request belongs to; `API_KEY_REQUIRED`
    /// without one. Lets a console or script check its key.
    async fn api_key(&self, ctx: &Context<'_>) -> async_graphql::Result<ApiKeyInfo> {
        let p = auth::principal(ctx).map_err(|e| e.into_graphql())?;
        Ok(ApiKeyInfo {
            name: p.name.clone(),
            role: p.role,
            queues: p.queues.clone(),
            permissions: p.permissions(),
        })
    }
}
