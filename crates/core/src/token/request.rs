//! The token request (RFC 6749 §4.4 client credentials, §6 refresh): headers and form body.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::config::{ClientAuth, Grant, TokenConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Pseudo-headers first, as Envoy's `dispatch_http_call` wants them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// RFC 6749 Appendix B: `application/x-www-form-urlencoded`, space as `+`.
pub fn form_encode(value: &str, out: &mut String) {
    for byte in value.bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._*".contains(&b) => out.push(char::from(b)),
            b => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0x0f)]));
            }
        }
    }
}

/// Builds the request. `refresh_token` is the current one of a rotating chain (the configured
/// first one until the endpoint hands out another).
pub fn build_request(config: &TokenConfig, refresh_token: Option<&str>) -> TokenRequest {
    let mut form: Vec<(&str, &str)> = Vec::new();
    match &config.grant {
        Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        Grant::RefreshToken { initial } => {
            form.push(("grant_type", "refresh_token"));
            form.push(("refresh_token", refresh_token.unwrap_or(initial.expose())));
        }
    }
    // RFC 6749 §6: a refresh may only narrow the scope the refresh token was issued with, so
    // it asks for none and keeps what it had; the client credentials grant asks for the scopes.
    let scope = config.scopes.join(" ");
    if !scope.is_empty() && config.grant == Grant::ClientCredentials {
        form.push(("scope", &scope));
    }
    if let Some(audience) = &config.audience {
        form.push(("audience", audience));
    }
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), config.path.clone()),
        (":authority".to_string(), config.authority.clone()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    let secret = config.client_secret.as_ref().map(|s| s.expose());
    match config.client_auth {
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
        ClientAuth::Basic => {
            let mut pair = String::new();
            form_encode(&config.client_id, &mut pair);
            pair.push(':');
            form_encode(secret.unwrap_or(""), &mut pair);
            headers.push((
                "authorization".to_string(),
                format!("Basic {}", STANDARD.encode(pair)),
            ));
        }
        ClientAuth::Post => {
            form.push(("client_id", &config.client_id));
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
        }
    }
    let mut body = String::new();
    for (i, (name, value)) in form.iter().enumerate() {
        if i > 0 {
            body.push('&');
        }
        form_encode(name, &mut body);
        body.push('=');
        form_encode(value, &mut body);
    }
    TokenRequest {
        headers,
        body: body.into_bytes(),
    }
}
