//! Who may call: roles and the principal a bearer token stands for.
//!
//! A token has exactly one role. `Admin` runs the platform (catalogue, campaigns,
//! planning, money views, and any factory's calls for operators); `Storefront` places,
//! cancels and pays pre-orders on behalf of consumers and reads campaigns; `Factory` is
//! bound to one factory id and sees only that factory's work orders. Which gRPC method
//! needs which role is the server's table (`c2m_server::auth`); this module only names
//! the roles, so the store can keep them and the server can decide with them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Storefront,
    Factory,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Storefront => "storefront",
            Role::Factory => "factory",
        }
    }

    pub fn parse(s: &str) -> Result<Role, DomainError> {
        match s {
            "admin" => Ok(Role::Admin),
            "storefront" => Ok(Role::Storefront),
            "factory" => Ok(Role::Factory),
            other => Err(DomainError::invalid(
                "role",
                format!("unknown role `{other}` (admin, storefront or factory)"),
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The caller a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's public id (never its secret).
    pub token_id: String,
    pub role: Role,
    /// The factory a `Factory` token is bound to; `None` for the other roles.
    pub factory: Option<String>,
}

impl Principal {
    /// The factory this caller may act for: its own for a factory token (whatever the
    /// request names: a different one is refused), the requested one for an admin, and
    /// none for a storefront.
    pub fn factory_scope(&self, requested: &str) -> Result<String, DomainError> {
        let requested = requested.trim();
        match (self.role, &self.factory) {
            (Role::Factory, Some(own)) if requested.is_empty() || requested == own => {
                Ok(own.clone())
            }
            (Role::Factory, Some(own)) => Err(DomainError::PermissionDenied {
                role: self.role.to_string(),
                own: Some(own.clone()),
                requested: requested.to_owned(),
            }),
            (Role::Admin, _) if !requested.is_empty() => Ok(requested.to_owned()),
            (Role::Admin, _) => Err(DomainError::invalid("factory_id", "is required")),
            _ => Err(DomainError::PermissionDenied {
                role: self.role.to_string(),
                own: None,
                requested: requested.to_owned(),
            }),
        }
    }
}

/// Checks a factory binding for a new token: factory tokens need one, others must not
/// have one.
pub fn check_binding(role: Role, factory: Option<&str>) -> Result<(), DomainError> {
    match (role, factory.map(str::trim)) {
        (Role::Factory, Some(f)) if !f.is_empty() => Ok(()),
        (Role::Factory, _) => Err(DomainError::invalid(
            "factory",
            "a factory token must name its factory (--factory ID)",
        )),
        (_, Some(f)) if !f.is_empty() => Err(DomainError::invalid(
            "factory",
            format!("only factory tokens are bound to a factory, not {role} tokens"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, factory: Option<&str>) -> Principal {
        Principal {
            token_id: "t".into(),
            role,
            factory: factory.map(str::to_owned),
        }
    }

    #[test]
    fn a_factory_token_acts_only_for_its_factory() {
        let f = p(Role::Factory, Some("cixi-1"));
        assert_eq!(f.factory_scope("").unwrap(), "cixi-1");
        assert_eq!(f.factory_scope("cixi-1").unwrap(), "cixi-1");
        let e = f.factory_scope("zhongshan-2").unwrap_err();
        assert_eq!(e.reason(), "NOT_PERMITTED");
        assert_eq!(
            e.metadata(),
            [
                ("role", "factory".to_owned()),
                ("factoryId", "cixi-1".to_owned()),
                ("requestedFactoryId", "zhongshan-2".to_owned()),
            ]
        );
        assert_eq!(
            e.to_string(),
            "this token is bound to factory cixi-1; it cannot act for factory zhongshan-2"
        );
        assert_eq!(
            p(Role::Admin, None).factory_scope("zhongshan-2").unwrap(),
            "zhongshan-2"
        );
        assert!(matches!(
            p(Role::Storefront, None).factory_scope("cixi-1"),
            Err(DomainError::PermissionDenied { .. })
        ));
    }

    #[test]
    fn bindings() {
        assert!(check_binding(Role::Factory, Some("cixi-1")).is_ok());
        assert!(check_binding(Role::Factory, None).is_err());
        assert!(check_binding(Role::Admin, Some("cixi-1")).is_err());
        assert!(check_binding(Role::Storefront, None).is_ok());
        assert_eq!(Role::parse("storefront").unwrap(), Role::Storefront);
        assert!(Role::parse("root").is_err());
    }
}
