//! The admin form's body, with HAProxy's field names: `b` the backend, `s` each checked server
//! (repeated), `action` (`ready`, `drain`, `maint`, `dhlth`, `ehlth`, `dagent`, `eagent`,
//! `shutdown`, `weight`), `weight` for the `weight` action, and our `token` (the CSRF token, see [`super::session`]).

use fulcrum_common::action::{ServerAction, ServerRef};

/// The largest body accepted; a form for a few hundred servers is a few KiB.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// The most servers one action names: a backend's checkboxes, not thousands of copies of one
/// (each becomes an action, a log line and a message on the next page).
pub(super) const MAX_SERVERS: usize = 1024;

/// The decoded form. Unknown fields are ignored, as browsers may add some (the submit button's).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ActionForm {
    pub(super) backend: Option<String>,
    pub(super) servers: Vec<String>,
    pub(super) action: Option<String>,
    pub(super) weight: Option<String>,
    pub(super) token: Option<String>,
}

impl ActionForm {
    /// Decodes `application/x-www-form-urlencoded`; invalid percent escapes and UTF-8 decode
    /// lossily, so a malformed body is refused later by name, never by a panic.
    pub(super) fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (name, value) in form_urlencoded::parse(body) {
            let value = value.into_owned();
            match &*name {
                "b" => form.backend = Some(value),
                "s" => form.servers.push(value),
                "action" => form.action = Some(value),
                "weight" => form.weight = Some(value),
                "token" => form.token = Some(value),
                _ => {}
            }
        }
        form
    }

    /// The action and the servers it applies to, or what the operator must fix.
    pub(super) fn request(&self) -> Result<(ServerAction, Vec<ServerRef>), String> {
        let backend = self
            .backend
            .as_deref()
            .filter(|b| !b.is_empty())
            .ok_or("the form names no backend")?;
        let action = self
            .action
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or("no action chosen")?;
        let action = ServerAction::from_form(action, self.weight.as_deref())?;
        // No name of a backend or a server holds one; logged, a newline would start a forged
        // line of its own in the text log.
        let has_control = |name: &str| name.chars().any(char::is_control);
        if has_control(backend) || self.servers.iter().any(|s| has_control(s)) {
            return Err("a name in the form holds a control character".to_owned());
        }
        let mut servers: Vec<ServerRef> = Vec::new();
        for server in self.servers.iter().filter(|s| !s.is_empty()) {
            if servers.iter().any(|s| s.server == *server) {
                continue;
            }
            if servers.len() == MAX_SERVERS {
                return Err(format!(
                    "too many servers in one action: at most {MAX_SERVERS}"
                ));
            }
            servers.push(ServerRef {
                backend: backend.to_owned(),
                server: server.clone(),
            });
        }
        if servers.is_empty() {
            return Err("no server selected: tick at least one".to_owned());
        }
        Ok((action, servers))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use fulcrum_common::action::AdminState;

    use super::*;

    #[test]
    fn repeated_servers_and_escapes_are_decoded() {
        let form = ActionForm::parse(
            b"s=s1&s=10.0.0.5%3A3306&s=a+b&b=web%2Fx&action=drain&token=t0k&submit=Apply",
        );
        assert_eq!(
            form,
            ActionForm {
                backend: Some("web/x".into()),
                servers: vec!["s1".into(), "10.0.0.5:3306".into(), "a b".into()],
                action: Some("drain".into()),
                weight: None,
                token: Some("t0k".into()),
            }
        );
        let (action, servers) = form.request().unwrap();
        assert_eq!(action, ServerAction::SetState(AdminState::Drain));
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[1].to_string(), "web/x/10.0.0.5:3306");
    }

    // Input: a body naming s1 sixteen thousand times; then 1,025 different servers. Output:
    // the first is one action on one server (it was 16,000 actions, log lines and messages);
    // the second is refused.
    #[test]
    fn repeated_servers_count_once_and_one_action_names_at_most_1024() {
        let body = format!("b=web&action=drain{}", "&s=s1".repeat(16_000));
        let (_, servers) = ActionForm::parse(body.as_bytes()).request().unwrap();
        assert_eq!(servers.len(), 1);
        let many: String = (0..=MAX_SERVERS).map(|i| format!("&s=s{i}")).collect();
        let body = format!("b=web&action=drain{many}");
        let error = ActionForm::parse(body.as_bytes()).request().unwrap_err();
        assert!(error.contains("too many servers"), "{error}");
    }

    // Input: a server name, then a backend name, with an encoded newline and a forged log line
    // after it. Output: both refused before any action (and any log line naming them).
    #[test]
    fn names_with_control_characters_are_refused() {
        for body in [
            "b=web&action=drain&s=s1%0Afake+admin+action",
            "b=web%0D%0Afake&action=drain&s=s1",
        ] {
            let error = ActionForm::parse(body.as_bytes()).request().unwrap_err();
            assert!(error.contains("control character"), "{body}: {error}");
        }
    }

    #[test]
    fn malformed_bodies_do_not_panic() {
        for body in [
            &b""[..],
            b"&&&",
            b"=",
            b"s",
            b"%",
            b"%zz=%ff%fe",
            b"s=%E2%82",
            b"\xff\xfe=\x00",
        ] {
            let form = ActionForm::parse(body);
            assert!(form.request().is_err(), "{body:?}");
        }
    }

    #[test]
    fn incomplete_forms_say_what_is_missing() {
        let err = |body: &[u8]| ActionForm::parse(body).request().unwrap_err();
        assert!(err(b"b=web&action=drain").contains("no server selected"));
        assert!(err(b"b=web&s=&action=drain").contains("no server selected"));
        assert!(err(b"s=s1&action=drain").contains("no backend"));
        assert!(err(b"b=web&s=s1").contains("no action"));
        assert!(err(b"b=web&s=s1&action=explode").contains("unknown action"));
        assert!(err(b"b=web&s=s1&action=weight&weight=x").contains("whole number"));
        let (action, _) = ActionForm::parse(b"b=web&s=s1&action=weight&weight=7")
            .request()
            .unwrap();
        assert_eq!(action, ServerAction::SetWeight(7));
    }
}
