//! Platform profiles: the defaults a CCaaS platform implies (identity headers, parameter names,
//! envelope shape, subprotocols). Every value here can be overridden in configuration.

/// The event envelope a platform speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `{"type", "data", "metadata"}`.
    Genesys,
    /// `{"eventType", "payload", "correlationId"}`.
    Nice,
}

impl Envelope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Envelope::Genesys => "genesys",
            Envelope::Nice => "nice",
        }
    }
}

/// A named set of defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Generic,
    Genesys,
    Nice,
}

/// What a profile implies, before the configuration's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileDefaults {
    pub agent_header: &'static str,
    pub tenant_header: &'static str,
    pub region_header: &'static str,
    pub token_query_param: &'static str,
    pub resume_query_param: &'static str,
    pub subprotocols: &'static [&'static str],
    pub envelope: Envelope,
    /// Where the platform expects its OAuth token on the upgrade: the `access_token` query
    /// parameter (true) or `Authorization: Bearer` (false).
    pub platform_token_in_query: bool,
}

impl Profile {
    pub const NAMES: &'static str = "generic, genesys, nice";

    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "generic" => Some(Profile::Generic),
            "genesys" => Some(Profile::Genesys),
            "nice" => Some(Profile::Nice),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Generic => "generic",
            Profile::Genesys => "genesys",
            Profile::Nice => "nice",
        }
    }

    pub const fn defaults(self) -> ProfileDefaults {
        match self {
            Profile::Generic => ProfileDefaults {
                agent_header: "x-agent-id",
                tenant_header: "x-tenant-id",
                region_header: "x-agent-region",
                token_query_param: "access_token",
                resume_query_param: "since",
                subprotocols: &[],
                envelope: Envelope::Genesys,
                platform_token_in_query: false,
            },
            Profile::Genesys => ProfileDefaults {
                agent_header: "x-genesys-user-id",
                tenant_header: "x-genesys-organization-id",
                region_header: "x-genesys-region",
                token_query_param: "access_token",
                resume_query_param: "since",
                subprotocols: &["v2.realtime-events"],
                envelope: Envelope::Genesys,
                platform_token_in_query: false,
            },
            Profile::Nice => ProfileDefaults {
                agent_header: "x-nice-agent-id",
                tenant_header: "x-nice-tenant-id",
                region_header: "x-nice-region",
                token_query_param: "access_token",
                resume_query_param: "cursor",
                subprotocols: &["nice.digital.v1"],
                envelope: Envelope::Nice,
                platform_token_in_query: true,
            },
        }
    }
}
