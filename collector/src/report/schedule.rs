//! Scheduled reports from the collector configuration (`[[reports.schedule]]`): a cron expression
//! (the `cron` crate: `sec min hour day-of-month month day-of-week [year]`, UTC), a period, formats
//! and an output directory. Each run writes `<name>-<UTC time>.<format>` (CSV: a directory) and is
//! recorded in `report_runs`, listed by `GET /api/v1/reports/runs`. A schedule with `email_to`
//! also mails the files through `[reports.smtp]` (`email`); the delivery's outcome is recorded on
//! the run, and a failed delivery never fails the run or the collector.
//!
//! Collectors sharing one database (PostgreSQL) may all have the section: each slot (schedule,
//! run time) is claimed by inserting a `report_slots` row before it runs, so it runs once.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};

use super::email::{self, Letter, SmtpFile, SmtpSettings};
use super::pseudonym::{Namer, load_or_create_key};
use super::{Format, Report, ReportRequest};
use crate::config::ConfigError;
use crate::store::{ReportRun, Store};

/// One `[[reports.schedule]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    name: String,
    cron: String,
    #[serde(default = "default_since")]
    since: String,
    formats: Vec<String>,
    output_dir: PathBuf,
    group: Option<String>,
    #[serde(default)]
    pseudonymize: bool,
    /// Recipients of the report by e-mail (needs `[reports.smtp]`).
    email_to: Option<Vec<String>>,
}

fn default_since() -> String {
    "30d".into()
}

/// The `[reports]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsFile {
    #[serde(default)]
    schedule: Vec<ScheduleFile>,
    /// The SMTP server for schedules with `email_to`.
    smtp: Option<SmtpFile>,
}

/// Where a schedule's reports are mailed.
#[derive(Debug, Clone)]
pub struct EmailDelivery {
    pub smtp: Arc<SmtpSettings>,
    pub to: lettre::message::Mailboxes,
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron: cron::Schedule,
    /// Period length before the run time.
    pub length_ms: i64,
    pub formats: Vec<Format>,
    pub output_dir: PathBuf,
    pub group: Option<String>,
    pub pseudonymize: bool,
    /// E-mail delivery, when the schedule has `email_to`.
    pub email: Option<EmailDelivery>,
}

impl ReportsFile {
    pub fn validate(self) -> Result<Vec<Schedule>, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            key: "reports.schedule",
            problem,
        };
        let smtp = self.smtp.map(SmtpFile::validate).transpose()?.map(Arc::new);
        let mut schedules: Vec<Schedule> = Vec::new();
        for entry in self.schedule {
            let is_name = !entry.name.is_empty()
                && entry.name.len() <= 64
                && entry
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !is_name {
                return Err(invalid(format!(
                    "name `{}`: use 1 to 64 letters, digits, - or _",
                    entry.name
                )));
            }
            if schedules.iter().any(|s| s.name == entry.name) {
                return Err(invalid(format!("name `{}` is used twice", entry.name)));
            }
            let cron = cron::Schedule::from_str(&entry.cron).map_err(|e| {
                invalid(format!(
                    "{}: cron `{}`: {e} (fields: sec min hour day month weekday)",
                    entry.name, entry.cron
                ))
            })?;
            let length_ms = super::parse_duration_ms(&entry.since)
                .map_err(|e| invalid(format!("{}: since {e}", entry.name)))?;
            if entry.formats.is_empty() {
                return Err(invalid(format!("{}: formats is empty", entry.name)));
            }
            let formats = entry
                .formats
                .iter()
                .map(|f| f.parse::<Format>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("{}: {e}", entry.name)))?;
            if let Some(group) = &entry.group {
                super::check_group(group).map_err(|e| invalid(format!("{}: {e}", entry.name)))?;
            }
            let email = match (&entry.email_to, &smtp) {
                (None, _) => None,
                (Some(_), None) => {
                    return Err(invalid(format!(
                        "{}: email_to needs a [reports.smtp] section (host, tls, from)",
                        entry.name
                    )));
                }
                (Some(addresses), Some(smtp)) => Some(EmailDelivery {
                    smtp: smtp.clone(),
                    to: email::parse_recipients(&entry.name, addresses)?,
                }),
            };
            schedules.push(Schedule {
                email,
                name: entry.name,
                cron,
                length_ms,
                formats,
                output_dir: entry.output_dir,
                group: entry.group,
                pseudonymize: entry.pseudonymize,
            });
        }
        Ok(schedules)
    }
}

/// The first run time strictly after `after_ms` (Unix ms), if the schedule has one.
pub fn next_run_ms(schedule: &cron::Schedule, after_ms: i64) -> Option<i64> {
    let after = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after_ms)?;
    schedule.after(&after).next().map(|t| t.timestamp_millis())
}

/// Makes one report of `schedule` for the period ending at `until_ms`, writes every format, and
/// records the run (also when it failed). With `email_to`, the files are then mailed and the
/// delivery's outcome is recorded on the run: `sent`, `failed` (with the error) or `skipped`
/// (the report itself failed).
pub async fn run_once(
    store: &Store,
    schedule: &Schedule,
    data_dir: &Path,
    until_ms: i64,
) -> ReportRun {
    let started_at_ms = crate::server::now_ms();
    let mut files = Vec::new();
    let mut built: Option<Report> = None;
    let result = async {
        let namer = if schedule.pseudonymize {
            Namer::keyed(load_or_create_key(data_dir).map_err(|e| format!("pseudonym key: {e}"))?)
        } else {
            Namer::plain()
        };
        let request = ReportRequest {
            since_ms: until_ms - schedule.length_ms,
            until_ms,
            group: schedule.group.clone(),
            namer,
        };
        let report = super::data::build(store, &request, started_at_ms)
            .await
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&schedule.output_dir)
            .map_err(|e| format!("{}: {e}", schedule.output_dir.display()))?;
        let stamp = stamp(until_ms);
        for format in &schedule.formats {
            // Typesetting a PDF takes a while: off the async workers.
            let rendered = {
                let report = report.clone();
                let format = *format;
                tokio::task::spawn_blocking(move || super::render(&report, format))
                    .await
                    .map_err(|e| format!("the renderer stopped: {e}"))?
                    .map_err(|e| e.to_string())?
            };
            let name = match format {
                Format::Csv => format!("{}-{stamp}-csv", schedule.name),
                _ => format!("{}-{stamp}.{}", schedule.name, format.as_str()),
            };
            let written = super::write(&rendered, &schedule.output_dir.join(name))
                .map_err(|e| e.to_string())?;
            files.extend(written);
        }
        built = Some(report);
        Ok::<(), String>(())
    }
    .await;
    let mut run = ReportRun {
        id: uuid::Uuid::now_v7().to_string(),
        schedule: schedule.name.clone(),
        started_at_ms,
        finished_at_ms: crate::server::now_ms(),
        since_ms: until_ms - schedule.length_ms,
        until_ms,
        formats: schedule
            .formats
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(","),
        files: serde_json::to_string(&files).unwrap_or_default(),
        outcome: if result.is_ok() { "ok" } else { "failed" }.into(),
        error: result.err(),
        delivery: schedule.email.as_ref().map(|_| {
            if built.is_some() {
                "pending"
            } else {
                "skipped"
            }
            .to_owned()
        }),
        delivery_error: None,
    };
    match &run.error {
        None => info!(schedule = %run.schedule, files = files.len(), "scheduled report written"),
        Some(error) => warn!(schedule = %run.schedule, %error, "scheduled report failed"),
    }
    if let Err(error) = store.record_report_run(&run).await {
        warn!(schedule = %run.schedule, error = %error, "cannot record the report run");
    }
    if let (Some(email), Some(report)) = (&schedule.email, &built) {
        let letter = letter(schedule, report, &files);
        let (delivery, delivery_error) = match email::send(&email.smtp, &email.to, &letter).await {
            Ok(()) => {
                info!(schedule = %run.schedule, recipients = email.to.iter().count(), "report e-mailed");
                ("sent", None)
            }
            Err(error) => {
                warn!(schedule = %run.schedule, %error, "report e-mail failed");
                ("failed", Some(error))
            }
        };
        run.delivery = Some(delivery.to_owned());
        run.delivery_error = delivery_error;
        if let Err(error) = store
            .record_report_delivery(&run.id, delivery, run.delivery_error.as_deref())
            .await
        {
            warn!(schedule = %run.schedule, error = %error, "cannot record the report delivery");
        }
    }
    run
}

/// Runs the slot of `schedule` at `at_ms` if this collector is the first to claim it (collectors
/// sharing a database each run a slot once between them). `None` when another collector has it,
/// or when the claim cannot be stored (then nobody may have run it: logged).
pub async fn run_claimed(
    store: &Store,
    schedule: &Schedule,
    data_dir: &Path,
    at_ms: i64,
    claimant: &str,
) -> Option<ReportRun> {
    match store
        .claim_report_slot(&schedule.name, at_ms, claimant, crate::server::now_ms())
        .await
    {
        Ok(true) => Some(run_once(store, schedule, data_dir, at_ms).await),
        Ok(false) => {
            info!(schedule = %schedule.name, slot_ms = at_ms, "another collector runs this report");
            None
        }
        Err(error) => {
            warn!(schedule = %schedule.name, %error, "cannot claim the report slot: not run");
            None
        }
    }
}

/// The e-mail of a run: a subject naming the schedule, group and period; the headline figures;
/// the files. Values reach lettre's builders, which encode them (no header injection).
pub fn letter(schedule: &Schedule, report: &Report, files: &[String]) -> Letter {
    let day = |text: &str| text.get(..10).unwrap_or(text).to_owned();
    let group = report
        .group
        .as_deref()
        .map(|g| format!(", group {g}"))
        .unwrap_or_default();
    let subject = format!(
        "shadowai report {}{group}: {} to {}",
        schedule.name,
        day(&report.period.since),
        day(&report.period.until)
    );
    let summary = &report.summary;
    let mut body = format!(
        "The scheduled shadowai evidence report `{}`{group}, period {} to {}.\n\n\
         Hosts with unsanctioned AI: {} ({} vs previous period)\n\
         Users with unsanctioned AI: {} ({} vs previous period)\n\
         Share of the fleet: {}% (previously {}%)\n\
         Recommendations: {}\n\n\
         Attached: the report files below.\n",
        schedule.name,
        report.period.since,
        report.period.until,
        summary.hosts_with_unsanctioned_ai.value,
        super::data::change_text(&summary.hosts_with_unsanctioned_ai),
        summary.users_with_unsanctioned_ai.value,
        super::data::change_text(&summary.users_with_unsanctioned_ai),
        summary.fleet_share_percent,
        summary.previous_fleet_share_percent,
        report.recommendations.len(),
    );
    for file in files {
        body.push_str(&format!("  {file}\n"));
    }
    Letter {
        subject,
        body,
        files: files.iter().map(PathBuf::from).collect(),
    }
}

/// `20261121T070000Z`
fn stamp(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Runs every schedule until `shutdown` turns true.
pub fn spawn(
    store: Store,
    schedules: Vec<Schedule>,
    data_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if schedules.is_empty() {
            return;
        }
        // who claims slots: this process (a restart is a new claimant; a slot stays claimed)
        let claimant = format!(
            "{}:{}:{}",
            crate::config::hostname().unwrap_or_default(),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let mut next: Vec<Option<i64>> = schedules
            .iter()
            .map(|s| next_run_ms(&s.cron, crate::server::now_ms()))
            .collect();
        loop {
            let Some((index, at_ms)) = next
                .iter()
                .enumerate()
                .filter_map(|(i, at)| at.map(|at| (i, at)))
                .min_by_key(|(_, at)| *at)
            else {
                return;
            };
            let wait = u64::try_from(at_ms - crate::server::now_ms()).unwrap_or(0);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = shutdown.changed() => return,
            }
            let schedule = &schedules[index];
            run_claimed(&store, schedule, &data_dir, at_ms, &claimant).await;
            next[index] = next_run_ms(&schedule.cron, at_ms.max(crate::server::now_ms()));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_validated_and_fire_in_utc() {
        let file: ReportsFile = toml::from_str(
            "[[schedule]]\nname = \"monthly\"\ncron = \"0 0 7 1 * *\"\nformats = [\"html\", \"csv\"]\noutput_dir = \"/tmp/r\"\n",
        )
        .unwrap();
        let schedules = file.validate().unwrap();
        assert_eq!(schedules[0].length_ms, 30 * 86_400_000);
        // 2026-11-21T00:00:00Z -> 2026-12-01T07:00:00Z
        assert_eq!(
            next_run_ms(&schedules[0].cron, 1_795_219_200_000),
            Some(1_796_108_400_000)
        );
        for (text, expected) in [
            (
                "[[schedule]]\nname = \"a b\"\ncron = \"0 0 7 1 * *\"\nformats = [\"html\"]\noutput_dir = \"/r\"\n",
                "letters",
            ),
            (
                "[[schedule]]\nname = \"a\"\ncron = \"every day\"\nformats = [\"html\"]\noutput_dir = \"/r\"\n",
                "cron",
            ),
            (
                "[[schedule]]\nname = \"a\"\ncron = \"0 0 7 1 * *\"\nformats = [\"docx\"]\noutput_dir = \"/r\"\n",
                "unknown format",
            ),
            (
                "[[schedule]]\nname = \"a\"\ncron = \"0 0 7 1 * *\"\nformats = []\noutput_dir = \"/r\"\n",
                "empty",
            ),
        ] {
            let file: ReportsFile = toml::from_str(text).unwrap();
            let error = file.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
