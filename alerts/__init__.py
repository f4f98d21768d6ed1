"""Trader alerts: what happened, formatted for people, sent to Slack and Telegram.

`types` holds the alert and the notifier protocol, `text` the plain-text rendering, `slack` and
`telegram` the two notifiers over httpx, `dispatcher` the queue that never makes the watchdog
or the engine wait. Which notifiers run is decided from settings in `app.alerting`.
"""
