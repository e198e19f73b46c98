//! The mails (plain text, money formatted from cents) and the [`Mailer`] that sends them by
//! SMTP or writes them as `.eml` files.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::NotificationSettings;
use crate::store::KnownOrder;

/// One mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    /// The Message-ID (`<event-id@tiktokmall.notification>`): derived from the event id, so a
    /// duplicate after a crash is recognisable as one.
    pub message_id: String,
}

/// The Message-ID of the mail for event `event_id`.
pub fn message_id(event_id: &str) -> String {
    format!("<{event_id}@tiktokmall.notification>")
}

/// `12345` cents in `USD` → `123.45 USD` (integer arithmetic only).
pub fn format_money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

fn item_lines(order: &KnownOrder) -> String {
    order
        .items
        .iter()
        .map(|(product, quantity, cost)| {
            format!(
                "  - product {product} x{quantity}: {}\n",
                format_money(*cost, &order.currency)
            )
        })
        .collect()
}

/// The order confirmation, sent when the order is paid.
pub fn confirmation(order: &KnownOrder, event_id: &str) -> Mail {
    Mail {
        to: order.email.clone(),
        subject: format!("Your TikTokMall order {} is confirmed", order.order_id),
        body: format!(
            "Thank you for your order.\n\nOrder: {}\nItems:\n{}Total: {}\n\nWe will let you know \
             when it ships.\n",
            order.order_id,
            item_lines(order),
            format_money(order.total_cents, &order.currency),
        ),
        message_id: message_id(event_id),
    }
}

/// The cancellation notice.
pub fn cancellation(order: &KnownOrder, reason: &str, event_id: &str) -> Mail {
    let reason = if reason.is_empty() {
        "no reason given"
    } else {
        reason
    };
    Mail {
        to: order.email.clone(),
        subject: format!("Your TikTokMall order {} was cancelled", order.order_id),
        body: format!(
            "Your order was cancelled ({reason}).\n\nOrder: {}\nItems:\n{}Total: {}\n\nNothing \
             was charged for it, or the charge is refunded.\n",
            order.order_id,
            item_lines(order),
            format_money(order.total_cents, &order.currency),
        ),
        message_id: message_id(event_id),
    }
}

/// The refund notice.
pub fn refund(order: &KnownOrder, amount_cents: i64, refund_id: &str, event_id: &str) -> Mail {
    Mail {
        to: order.email.clone(),
        subject: format!("A refund for your TikTokMall order {}", order.order_id),
        body: format!(
            "We refunded {} for your order {} (refund {refund_id}).\n\nIt may take a few days to \
             show on your statement.\n",
            format_money(amount_cents, &order.currency),
            order.order_id,
        ),
        message_id: message_id(event_id),
    }
}

/// The host and port of `smtp://[user[:password]@]host:port[/…]`.
pub fn smtp_authority(url: &str) -> Option<(&str, u16)> {
    let rest = url.strip_prefix("smtp://")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    mall_common::config::parse_authority(authority)
}

/// A failure to send one mail.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message could not be built (a bad address): retrying cannot help.
    #[error("bad mail: {0}")]
    Invalid(String),
    /// The server refused it or could not be reached.
    #[error("mail not sent: {0}")]
    Transport(String),
    /// The send took longer than `notification.send_timeout`.
    #[error("mail not sent within {0:?}")]
    Timeout(Duration),
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Sends mails where `notification.smtp_url` says: `smtp://host:port` (plain SMTP, credentials
/// from `notification.smtp_username` / `smtp_password`) or `file://DIR` (one `.eml` per mail).
pub struct Mailer {
    transport: Transport,
    from: lettre::message::Mailbox,
    timeout: Duration,
}

impl Mailer {
    /// A mailer for `settings` (the URL and sender were validated with the settings).
    pub fn new(settings: &NotificationSettings) -> anyhow::Result<Mailer> {
        let from = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("notification.from `{}`: {e}", settings.from))?;
        let transport = if let Some(dir) = settings.smtp_url.strip_prefix("file://") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("creating mail directory {}: {e}", dir.display()))?;
            Transport::File(AsyncFileTransport::new(dir))
        } else {
            let (host, port) = smtp_authority(&settings.smtp_url).ok_or_else(|| {
                anyhow::anyhow!(
                    "notification.smtp_url `{}` is not smtp://host:port",
                    mall_common::config::redact_url(&settings.smtp_url)
                )
            })?;
            // Plain SMTP: this build has no TLS for mail (see the crate docs).
            let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .timeout(Some(settings.send_timeout));
            if !settings.smtp_username.is_empty() {
                builder = builder.credentials(Credentials::new(
                    settings.smtp_username.clone(),
                    settings.smtp_password.expose().to_string(),
                ));
            }
            Transport::Smtp(builder.build())
        };
        Ok(Mailer {
            transport,
            from,
            timeout: settings.send_timeout,
        })
    }

    /// Sends `mail`, bounded by `notification.send_timeout`.
    pub async fn send(&self, mail: &Mail) -> Result<(), SendError> {
        let to = mail
            .to
            .parse()
            .map_err(|e| SendError::Invalid(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(mail.message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| SendError::Invalid(e.to_string()))?;
        let send = async {
            match &self.transport {
                Transport::Smtp(smtp) => smtp
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| SendError::Transport(e.to_string())),
                Transport::File(file) => file
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| SendError::Transport(e.to_string())),
            }
        };
        tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> KnownOrder {
        KnownOrder {
            order_id: "o-1".into(),
            user_id: 7,
            email: "buyer@example.com".into(),
            currency: "USD".into(),
            total_cents: 2_005,
            items: vec![(3, 2, 2_000), (4, 1, 5)],
        }
    }

    #[test]
    fn money_is_formatted_from_cents() {
        assert_eq!(format_money(0, "USD"), "0.00 USD");
        assert_eq!(format_money(5, "USD"), "0.05 USD");
        assert_eq!(format_money(123_456, "EUR"), "1234.56 EUR");
        assert_eq!(format_money(-250, "USD"), "-2.50 USD");
    }

    #[test]
    fn confirmation_lists_the_items_and_the_total() {
        let mail = confirmation(&order(), "e-1");
        assert_eq!(mail.to, "buyer@example.com");
        assert!(mail.subject.contains("o-1"), "{}", mail.subject);
        assert!(
            mail.body.contains("product 3 x2: 20.00 USD"),
            "{}",
            mail.body
        );
        assert!(mail.body.contains("Total: 20.05 USD"), "{}", mail.body);
        assert_eq!(mail.message_id, "<e-1@tiktokmall.notification>");
    }

    #[test]
    fn refund_and_cancellation_name_the_order() {
        let r = refund(&order(), 1_000, "r-9", "e-2");
        assert!(r.body.contains("10.00 USD"), "{}", r.body);
        assert!(r.body.contains("r-9"), "{}", r.body);
        let c = cancellation(&order(), "payment declined", "e-3");
        assert!(c.body.contains("payment declined"), "{}", c.body);
    }
}
