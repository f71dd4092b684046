"""Production monitoring: how the served model behaves on live traffic, from what the service recorded.

    drift               score drift per class (PSI, KS) and the action mix at a run's thresholds
    monitor             `moderation monitor`: the recent window from the prediction log; monitor.md/.json,
                        drift.png
    live_quality        `moderation live-quality`: precision, estimated recall and reviewer agreement from
                        review outcomes
    live_quality_report its markdown

Every allow / review / block here comes from `moderation.policy` (the one place the rule lives). The service's
records (prediction log, review queue) arrive as objects the caller opened: eval never imports serve.
"""
