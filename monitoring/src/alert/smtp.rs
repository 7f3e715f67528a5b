//! The email sink: keepalived's alert mail (headers `Date`, `From`, `Subject`, `X-Mailer`, `To`
//! in keepalived's order, a plain-text body) through an SMTP relay, with lettre.

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    address::Envelope,
    message::{
        Mailbox,
        header::{ContentType, Header, HeaderName, HeaderValue},
    },
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        extension::ClientId,
    },
};

use super::{
    config::{EmailConfig, SmtpTls},
    error::DeliveryError,
    event::Alert,
    sink::Deliver,
    text,
};

/// A connection per alert (lettre's pool is not built): alerts are rare, and a pooled
/// connection would mostly be one the relay has already closed.
pub(super) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
}

impl Email {
    /// The sink for `config`; fails only if the TLS settings cannot be built.
    pub(super) fn new(config: &EmailConfig) -> Result<Self, DeliveryError> {
        let params = || -> Result<TlsParameters, DeliveryError> {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(pem) = &config.ca_pem {
                builder = builder.add_root_certificate(Certificate::from_pem(pem)?);
            }
            Ok(builder.build_rustls()?)
        };
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
            SmtpTls::StartTls => Tls::Required(params()?),
            SmtpTls::Smtps => Tls::Wrapper(params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout))
            .tls(tls);
        if let Some(name) = host_name() {
            builder = builder.hello_name(ClientId::Domain(name));
        }
        if let Some(auth) = &config.auth {
            builder =
                builder.credentials(Credentials::new(auth.user.clone(), auth.password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from: config.from.clone(),
            to: config.to.clone(),
            timeout: config.timeout,
        })
    }
}

impl Deliver for Email {
    type Payload = (Envelope, Vec<u8>);

    fn prepare(&mut self, alert: &Alert) -> Result<Self::Payload, DeliveryError> {
        let text = text::render(alert);
        let mut builder = Message::builder()
            .date(alert.time)
            .from(self.from.clone())
            .subject(text.subject)
            .header(XMailer(
                concat!("Fulcrum ", env!("CARGO_PKG_VERSION")).to_owned(),
            ));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder.header(ContentType::TEXT_PLAIN).body(text.body)?;
        Ok((message.envelope().clone(), message.formatted()))
    }

    async fn deliver(&self, (envelope, message): &Self::Payload) -> Result<(), DeliveryError> {
        // lettre's timeout bounds each read and write; this bounds the whole conversation.
        let whole = self.timeout.saturating_mul(3);
        tokio::time::timeout(whole, self.transport.send_raw(envelope, message))
            .await
            .map_err(|_| DeliveryError::Timeout(whole))??;
        Ok(())
    }
}

/// The system's host name for EHLO, as keepalived sends; without it lettre says `[127.0.0.1]`,
/// which some relays refuse.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| name.to_owned())
}

/// keepalived's `X-Mailer: Keepalived`, naming us instead.
#[derive(Debug, Clone)]
struct XMailer(String);

impl Header for XMailer {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Mailer")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::alert::{Event, config::SmtpTls};

    #[test]
    fn headers_in_keepalived_order() {
        let config = EmailConfig {
            host: "127.0.0.1".into(),
            port: 25,
            from: "fulcrum@example.com".parse().unwrap(),
            to: vec![
                "root@localhost".parse().unwrap(),
                "ops@example.com".parse().unwrap(),
            ],
            tls: SmtpTls::None,
            ca_pem: None,
            auth: None,
            timeout: Duration::from_secs(1),
        };
        let mut email = Email::new(&config).unwrap();
        let (envelope, message) = email
            .prepare(&Alert {
                event: Event::Vrrp {
                    instance: "VI_1".into(),
                    state: "BACKUP".into(),
                    previous: None,
                    vips: vec![],
                },
                node: "lb1".into(),
                time: SystemTime::UNIX_EPOCH,
                suppressed: 0,
            })
            .unwrap();
        assert_eq!(envelope.to().len(), 2);
        let message = String::from_utf8(message).unwrap();
        let names: Vec<_> = message
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':').map(|(n, _)| n))
            .filter(|n| ["Date", "From", "Subject", "X-Mailer", "To"].contains(n))
            .collect();
        assert_eq!(
            names,
            ["Date", "From", "Subject", "X-Mailer", "To"],
            "{message}"
        );
        assert!(
            message.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"),
            "{message}"
        );
        assert!(message.contains("Subject: [lb1] VRRP Instance VI_1 - Entering BACKUP state\r\n"));
        assert!(message.contains("=> VRRP Instance is no longer owning VRRP VIPs <="));
    }
}
