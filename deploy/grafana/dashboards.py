#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/*.json: the platform's dashboard and one per app.

Edit the panels here and run `python3 deploy/grafana/dashboards.py`; the JSON files are
what Grafana provisions, and what crates/conveyor/tests/ops.rs checks against a live
Prometheus (every query must parse and return data). Gauges read from the database are
reported by every process, so they are combined with max; counters are summed.
Counters that exist only once something happened (failures, rescues) end in
`or vector(0)`, so a quiet system shows 0 rather than "No data".
"""
import json
import pathlib

RATE = "$__rate_interval"


def ts(title, exprs, unit="short", stack=False):
    return {"type": "timeseries", "title": title, "exprs": exprs, "unit": unit, "stack": stack}


def stat(title, expr, unit="short"):
    return {"type": "stat", "title": title, "exprs": [(expr, title)], "unit": unit}


PLATFORM = [
    stat("Workers online", "max(conveyor_workers_online)"),
    stat("Jobs running", 'sum(max by (queue) (conveyor_queue_jobs{state="running"}))'),
    stat("Jobs waiting", 'sum(max by (queue) (conveyor_queue_jobs{state="available"}))'),
    stat("Jobs failed (kept)", 'sum(max by (queue) (conveyor_queue_jobs{state="failed"}))'),
    ts("Jobs waiting by queue", [('max by (queue) (conveyor_queue_jobs{state="available"})', "{{queue}}")]),
    ts("Slots and running jobs by queue", [
        ("max by (queue) (conveyor_queue_slots)", "{{queue}} slots"),
        ('max by (queue) (conveyor_queue_jobs{state="running"})', "{{queue}} running"),
    ]),
    ts("Jobs ended per second by outcome", [
        (f"sum by (outcome) (rate(conveyor_jobs_finished_total[{RATE}]))", "{{outcome}}"),
    ], unit="ops", stack=True),
    ts("Jobs enqueued per second by queue", [
        (f"sum by (queue) (rate(conveyor_jobs_enqueued_total[{RATE}]))", "{{queue}}"),
    ], unit="ops"),
    ts("Job duration p50 / p99 by queue", [
        (f"histogram_quantile(0.5, sum by (queue, le) (rate(conveyor_job_duration_seconds_bucket[{RATE}])))", "{{queue}} p50"),
        (f"histogram_quantile(0.99, sum by (queue, le) (rate(conveyor_job_duration_seconds_bucket[{RATE}])))", "{{queue}} p99"),
    ], unit="s"),
    ts("Failure share", [
        (f'(sum(rate(conveyor_jobs_finished_total{{outcome="failed"}}[{RATE}])) or vector(0)) / sum(rate(conveyor_jobs_finished_total[{RATE}]))', "failed"),
    ], unit="percentunit"),
    ts("Lease rescues (10 min)", [
        ("sum(increase(conveyor_lease_rescues_total[10m])) or vector(0)", "rescued"),
    ]),
    ts("HTTP requests per second by status", [
        (f"sum by (listener, status) (rate(conveyor_http_requests_total[{RATE}]))", "{{listener}} {{status}}"),
    ], unit="reqps", stack=True),
    ts("HTTP latency p99 by listener", [
        (f"histogram_quantile(0.99, sum by (listener, le) (rate(conveyor_http_request_duration_seconds_bucket[{RATE}])))", "{{listener}}"),
    ], unit="s"),
    ts("Targets up", [('up{job=~"conveyor.*"}', "{{instance}}")]),
]


def app_jobs(queue):
    return [
        ts(f"{queue}: jobs by state", [(f'max by (state) (conveyor_queue_jobs{{queue="{queue}"}})', "{{state}}")]),
        ts(f"{queue}: jobs ended per second by kind", [
            (f'sum by (kind, outcome) (rate(conveyor_jobs_finished_total{{queue="{queue}"}}[{RATE}]))', "{{kind}} {{outcome}}"),
        ], unit="ops"),
        ts(f"{queue}: job duration p99 by kind", [
            (f'histogram_quantile(0.99, sum by (kind, le) (rate(conveyor_job_duration_seconds_bucket{{queue="{queue}"}}[{RATE}])))', "{{kind}}"),
        ], unit="s"),
    ]


def routes(prefix, listener="api"):
    return [
        ts("Requests per second by route", [
            (f'sum by (route, status) (rate(conveyor_http_requests_total{{listener="{listener}",route=~"{prefix}"}}[{RATE}]))', "{{route}} {{status}}"),
        ], unit="reqps"),
        ts("Latency p99 by route", [
            (f'histogram_quantile(0.99, sum by (route, le) (rate(conveyor_http_request_duration_seconds_bucket{{listener="{listener}",route=~"{prefix}"}}[{RATE}])))', "{{route}}"),
        ], unit="s"),
    ]


DASHBOARDS = {
    "platform": ("Conveyor: platform", PLATFORM),
    "longtask": ("Conveyor: longtask", [
        stat("Slots busy", 'max(conveyor_queue_jobs{queue="longtask",state="running"}) or vector(0)'),
        stat("Slots", 'max(conveyor_queue_slots{queue="longtask"})'),
        *app_jobs("longtask"),
        *routes("/api/tasks.*"),
    ]),
    "average": ("Conveyor: average", [
        stat("W (slots)", "max(average_slots_busy) + max(average_slots_idle)"),
        stat("Jobs in queue", "max(average_jobs_in_queue)"),
        stat("Tasks in queue", "max(average_tasks_in_queue)"),
        ts("Slots busy and idle", [("max(average_slots_busy)", "busy"), ("max(average_slots_idle)", "idle")], stack=True),
        ts("Jobs submitted per minute", [(f"sum(rate(average_jobs_submitted_total[{RATE}])) * 60", "submitted")]),
        *app_jobs("average"),
        *routes("/api/average.*"),
    ]),
    "repostats": ("Conveyor: repostats", [
        stat("Repositories in the snapshot", "max(repostats_snapshot_repositories)"),
        stat("Refreshes", "sum(repostats_refreshes_total)"),
        ts("GitHub budget left", [("min by (token, bucket) (repostats_github_remaining)", "{{token}} {{bucket}}")]),
        ts("GitHub budget exhausted", [("max by (token, bucket) (repostats_github_exhausted)", "{{token}} {{bucket}}")]),
        ts("Governor waits and clients throttled (10 min)", [
            ("sum(increase(repostats_rate_waits_total[10m])) or vector(0)", "waits for GitHub"),
            ("sum(increase(repostats_rate_limited_total[10m])) or vector(0)", "429s to our clients"),
        ]),
        *app_jobs("repostats"),
        *routes("/(repos|stats|ping)"),
    ]),
    "mining": ("Conveyor: mining", [
        stat("Repositories discovered", "sum(mining_repositories_discovered_total)"),
        stat("Repositories processed", "sum(mining_repositories_processed_total)"),
        stat("Files analysed", "sum(mining_files_analyzed_total)"),
        ts("Files analysed per second", [(f"sum(rate(mining_files_analyzed_total[{RATE}]))", "files")], unit="ops"),
        ts("Repositories processed per minute", [(f"sum(rate(mining_repositories_processed_total[{RATE}])) * 60", "repositories")]),
        *app_jobs("mining"),
        *app_jobs("mining-fetch"),
        *routes("/api/mining.*"),
    ]),
    "minitwit": ("Conveyor: minitwit", [
        stat("Users", "max(minitwit_users)"),
        stat("Messages", "max(minitwit_messages)"),
        stat("Follows", "max(minitwit_follows)"),
        ts("Registrations and posts per minute", [
            (f"sum(rate(minitwit_registrations_total[{RATE}])) * 60", "registrations"),
            (f"sum(rate(minitwit_messages_posted_total[{RATE}])) * 60", "posts"),
        ]),
        *routes(".*", "minitwit-api"),
        ts("Pages: requests per second by route", [
            (f'sum by (route, status) (rate(conveyor_http_requests_total{{listener="minitwit-web"}}[{RATE}]))', "{{route}} {{status}}"),
        ], unit="reqps"),
    ]),
}


def panel(n, p):
    stat_panel = p["type"] == "stat"
    width, height = (6, 4) if stat_panel else (12, 8)
    per_row = 24 // width
    return {
        "id": n + 1,
        "type": p["type"],
        "title": p["title"],
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"x": (n % per_row) * width, "y": (n // per_row) * height, "w": width, "h": height},
        "fieldConfig": {
            "defaults": {
                "unit": p["unit"],
                **({} if stat_panel else {"custom": {"stacking": {"mode": "normal" if p["stack"] else "none"}}}),
            },
            "overrides": [],
        },
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}} if stat_panel else {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "expr": expr,
                "legendFormat": legend,
                **({"instant": True} if stat_panel else {"range": True}),
            }
            for i, (expr, legend) in enumerate(p["exprs"])
        ],
    }


def layout(panels):
    """Stats first in rows of four, then time series two a row."""
    stats = [p for p in panels if p["type"] == "stat"]
    series = [p for p in panels if p["type"] != "stat"]
    out = [panel(n, p) for n, p in enumerate(stats)]
    top = ((len(stats) + 3) // 4) * 4
    for n, p in enumerate(series):
        q = panel(n, p)
        q["id"] = len(out) + 1
        q["gridPos"]["y"] += top
        out.append(q)
    return out


def main():
    here = pathlib.Path(__file__).resolve().parent / "dashboards"
    here.mkdir(exist_ok=True)
    for uid, (title, panels) in DASHBOARDS.items():
        dashboard = {
            "uid": f"conveyor-{uid}",
            "title": title,
            "tags": ["conveyor"],
            "schemaVersion": 39,
            "version": 1,
            "editable": False,
            "time": {"from": "now-1h", "to": "now"},
            "refresh": "30s",
            "panels": layout(panels),
        }
        (here / f"{uid}.json").write_text(json.dumps(dashboard, indent=2) + "\n")


if __name__ == "__main__":
    main()
