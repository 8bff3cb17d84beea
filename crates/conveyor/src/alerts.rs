//! `POST /api/alerts/webhook`: Alertmanager's webhook receiver, forwarding each notification
//! to a chat (Slack's incoming webhooks or Telegram's Bot API `sendMessage`), as the KEDA
//! seed sent its "workers at maximum" alert to a chat.
//!
//! The forward happens inside the request: a chat that fails makes the answer a 502, and
//! Alertmanager, which retries failed notifications, sends it again. Nothing is queued here,
//! so nothing is lost when a process dies. Without a chat URL alerts are only logged.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use axum::Extension;
use axum::http::{HeaderMap, StatusCode};
use conveyor_web::AppState;
use conveyor_web::error::ApiError;
use conveyor_web::extract::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Telegram refuses messages longer than this many characters.
const MAX_MESSAGE_CHARS: usize = 4_000;
/// Alerts listed in one message; the rest are counted.
const MAX_LISTED: usize = 20;

/// The chat's message shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    /// `{"text": ...}` to an incoming-webhook URL.
    Slack,
    /// `{"chat_id": ..., "text": ...}` to `.../bot<token>/sendMessage`.
    Telegram,
}

/// Where alerts go, checked at start.
#[derive(Clone, Default)]
pub struct AlertConfig {
    /// The chat, if any: its URL, shape and (Telegram) chat id.
    pub chat: Option<(String, ChatKind, Option<String>)>,
    /// The bearer token callers must present, if set.
    pub token: Option<String>,
}

/// Secrets stay out of logs: Telegram's URL holds the bot's token.
impl std::fmt::Debug for AlertConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertConfig")
            .field("chat", &self.chat.as_ref().map(|(_, kind, _)| kind))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl AlertConfig {
    /// Checks the settings: a URL that is http(s), a known kind, a chat id for Telegram.
    ///
    /// # Errors
    /// Naming the setting that is wrong.
    pub fn resolve(
        url: Option<String>,
        kind: Option<&str>,
        chat_id: Option<String>,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        let token = token.filter(|t| !t.is_empty());
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            if kind.is_some() {
                bail!("alert_chat_kind is set but alert_chat_url is not");
            }
            return Ok(Self { chat: None, token });
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("alert_chat_url must be an http:// or https:// URL");
        }
        let kind = match kind {
            Some("slack") => ChatKind::Slack,
            Some("telegram") => ChatKind::Telegram,
            None if url.contains("/sendMessage") => ChatKind::Telegram,
            None => ChatKind::Slack,
            Some(other) => bail!("alert_chat_kind must be slack or telegram, not {other:?}"),
        };
        if kind == ChatKind::Telegram && chat_id.as_deref().is_none_or(str::is_empty) {
            bail!("alert_telegram_chat_id is needed to send alerts to Telegram");
        }
        Ok(Self {
            chat: Some((url, kind, chat_id)),
            token,
        })
    }
}

/// Alertmanager's webhook payload (version 4); fields we do not use are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// "firing" or "resolved": the group's state.
    #[schema(pattern = "^(firing|resolved)$")]
    pub status: String,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The alerts of the group (at least one).
    #[schema(min_items = 1)]
    pub alerts: Vec<Alert>,
    /// Alerts Alertmanager left out (its `max_alerts`).
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_i64)]
    pub truncated_alerts: u32,
    /// Alertmanager's own URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
}

/// One alert of a notification.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// "firing" or "resolved".
    #[schema(pattern = "^(firing|resolved)$")]
    pub status: String,
    /// Its labels (`alertname`, `severity`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub labels: Map<String, Value>,
    /// Its annotations (`summary`, `description`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub annotations: Map<String, Value>,
    /// When it started (RFC 3339).
    #[serde(default)]
    pub starts_at: String,
}

/// The answer: how many alerts came and whether they went to a chat.
#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    /// Alerts in the notification.
    pub alerts: usize,
    /// True when a chat took the message; false when no chat is configured.
    pub forwarded: bool,
}

#[derive(Debug)]
struct Forwarder {
    config: AlertConfig,
    http: reqwest::Client,
}

/// The receiver's settings and HTTP client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Alerts(Arc<Forwarder>);

impl Alerts {
    /// A receiver forwarding as `config` says.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: AlertConfig) -> anyhow::Result<Self> {
        conveyor_web::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("conveyor-alerts")
            .build()?;
        Ok(Self(Arc::new(Forwarder { config, http })))
    }
}

impl Alerts {
    /// Whether the webhook checks a token of its own (`ALERT_WEBHOOK_TOKEN`); without one
    /// it sits behind the operator's token like the job API.
    pub fn has_token(&self) -> bool {
        self.0.config.token.is_some()
    }
}

/// The webhook's route.
pub fn router(alerts: Alerts) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook))
        .layer(Extension(alerts))
}

/// Receives an Alertmanager notification and forwards it to the configured chat.
#[utoipa::path(post, path = "/api/alerts/webhook", tag = "alerts",
    request_body = Notification,
    responses(
        (status = 200, body = Received),
        (status = 400, description = "not an Alertmanager notification"),
        (status = 401, description = "missing or wrong bearer token"),
        (status = 502, description = "the chat refused or did not answer; Alertmanager retries"),
    ))]
async fn webhook(
    Extension(Alerts(forwarder)): Extension<Alerts>,
    headers: HeaderMap,
    Json(notification): Json<Notification>,
) -> Result<axum::Json<Received>, ApiError> {
    if let Some(token) = &forwarder.config.token {
        let given = conveyor_web::auth::bearer(&headers).unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the webhook needs Authorization: Bearer <ALERT_WEBHOOK_TOKEN>",
            ));
        }
    }
    if !matches!(notification.status.as_str(), "firing" | "resolved") {
        return Err(ApiError::bad_request(
            "status must be \"firing\" or \"resolved\"",
        ));
    }
    if notification.alerts.is_empty() {
        return Err(ApiError::bad_request("alerts must not be empty"));
    }
    if let Some(index) = notification
        .alerts
        .iter()
        .position(|a| !matches!(a.status.as_str(), "firing" | "resolved"))
    {
        return Err(ApiError::bad_request(format!(
            "alerts[{index}].status must be \"firing\" or \"resolved\""
        )));
    }
    for alert in &notification.alerts {
        metrics::counter!("conveyor_alerts_received_total", "status" => alert.status.clone())
            .increment(1);
        tracing::warn!(
            target: "conveyor::alerts",
            alert = label(alert, "alertname"),
            severity = label(alert, "severity"),
            status = alert.status,
            summary = annotation(alert, "summary"),
            "alert"
        );
    }
    let count = notification.alerts.len();
    let Some((url, kind, chat_id)) = &forwarder.config.chat else {
        return Ok(axum::Json(Received {
            alerts: count,
            forwarded: false,
        }));
    };
    let text = message(&notification);
    let body = match kind {
        ChatKind::Slack => json!({ "text": slack_escape(&text) }),
        ChatKind::Telegram => json!({
            "chat_id": chat_id,
            "text": text,
            "disable_web_page_preview": true,
        }),
    };
    let sent = forwarder.http.post(url).json(&body).send().await;
    match sent {
        Ok(response) if response.status().is_success() => Ok(axum::Json(Received {
            alerts: count,
            forwarded: true,
        })),
        outcome => {
            metrics::counter!("conveyor_alerts_forward_failures_total").increment(1);
            // The chat URL holds Telegram's bot token: never echo it.
            let why = match outcome {
                Ok(response) => format!("the chat answered {}", response.status()),
                Err(error) if error.is_timeout() => "the chat did not answer within 10 s".into(),
                Err(_) => "the chat could not be reached".into(),
            };
            tracing::error!(target: "conveyor::alerts", why, "could not forward alerts");
            Err(ApiError::new(StatusCode::BAD_GATEWAY, why))
        }
    }
}

/// The chat message: a headline per notification, a line per alert, bounded in length.
pub fn message(notification: &Notification) -> String {
    let firing = notification
        .alerts
        .iter()
        .filter(|a| a.status == "firing")
        .count();
    let mut names: Vec<&str> = notification
        .alerts
        .iter()
        .map(|a| label(a, "alertname"))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut text = if notification.status == "firing" {
        format!("[FIRING:{firing}] {}", names.join(", "))
    } else {
        format!("[RESOLVED] {}", names.join(", "))
    };
    for alert in notification.alerts.iter().take(MAX_LISTED) {
        let mut labels: Vec<String> = alert
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        labels.sort_unstable();
        let summary = annotation(alert, "summary");
        text.push_str(&format!(
            "\n- {} {} ({}){}{}",
            alert.status,
            label(alert, "alertname"),
            label(alert, "severity"),
            if summary.is_empty() { "" } else { ": " },
            summary,
        ));
        if !labels.is_empty() {
            text.push_str(&format!(" [{}]", labels.join(", ")));
        }
    }
    let more = notification.alerts.len().saturating_sub(MAX_LISTED) as u64
        + u64::from(notification.truncated_alerts);
    if more > 0 {
        text.push_str(&format!("\n... and {more} more"));
    }
    if !notification.external_url.is_empty() {
        text.push_str(&format!("\n{}", notification.external_url));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        text = text.chars().take(MAX_MESSAGE_CHARS - 3).collect::<String>() + "...";
    }
    text
}

fn label<'a>(alert: &'a Alert, name: &str) -> &'a str {
    alert.labels.get(name).and_then(Value::as_str).unwrap_or("")
}

fn annotation<'a>(alert: &'a Alert, name: &str) -> &'a str {
    alert
        .annotations
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Text as Slack's `mrkdwn` reads it literally: `&`, `<` and `>` as entities, so a label
/// holding `<!channel>` or `<https://x|click>` pings nobody and links nowhere (Slack's
/// "escaping text" rules). Telegram gets the text as it is: without `parse_mode` it treats
/// nothing as markup.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Compares in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(status: &str, alerts: usize) -> Notification {
        let alerts = (0..alerts)
            .map(|n| Alert {
                status: status.into(),
                labels: json!({"alertname": "WorkersAtMaximum", "severity": "warning", "queue": format!("q{n}")})
                    .as_object()
                    .unwrap()
                    .clone(),
                annotations: json!({"summary": "every worker is busy"})
                    .as_object()
                    .unwrap()
                    .clone(),
                starts_at: String::new(),
            })
            .collect();
        Notification {
            status: status.into(),
            receiver: "chat".into(),
            alerts,
            truncated_alerts: 0,
            external_url: "http://alertmanager:9093".into(),
        }
    }

    #[test]
    fn a_message_names_the_alerts_and_their_labels() {
        let text = message(&notification("firing", 2));
        assert!(text.starts_with("[FIRING:2] WorkersAtMaximum\n"), "{text}");
        assert!(
            text.contains("- firing WorkersAtMaximum (warning): every worker is busy [queue=q1]"),
            "{text}"
        );
        assert!(text.ends_with("http://alertmanager:9093"));
        let text = message(&notification("resolved", 1));
        assert!(text.starts_with("[RESOLVED] WorkersAtMaximum"), "{text}");
    }

    #[test]
    fn slack_markup_in_labels_is_shown_not_obeyed() {
        let escaped = slack_escape("disk <!channel> & <https://evil|here>");
        assert_eq!(
            escaped,
            "disk &lt;!channel&gt; &amp; &lt;https://evil|here&gt;"
        );
    }

    #[test]
    fn a_message_is_bounded() {
        let text = message(&notification("firing", 500));
        assert!(text.contains("... and 480 more"), "{text}");
        assert!(text.chars().count() <= MAX_MESSAGE_CHARS);
    }

    #[test]
    fn settings_are_checked() {
        let telegram = Some("https://api.telegram.org/bot1:x/sendMessage".to_owned());
        let error = AlertConfig::resolve(telegram.clone(), None, None, None).unwrap_err();
        assert!(error.to_string().contains("alert_telegram_chat_id"));
        let ok = AlertConfig::resolve(telegram, None, Some("42".into()), None).unwrap();
        assert_eq!(ok.chat.unwrap().1, ChatKind::Telegram);
        let error = AlertConfig::resolve(Some("ftp://x".into()), None, None, None).unwrap_err();
        assert!(error.to_string().contains("alert_chat_url"));
        let error =
            AlertConfig::resolve(Some("http://x".into()), Some("irc"), None, None).unwrap_err();
        assert!(error.to_string().contains("slack or telegram"));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
