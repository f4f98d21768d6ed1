"""News and sentiment: what the market is told, point in time, per coin.

`sources` fetches RSS/Atom feeds, Upbit's notices and CryptoPanic (conditional GET, a floor
per source, errors counted and skipped); `items` normalises an item and keys it for
deduplication; `coins` tags the coins a text names; `scoring` holds the `Scorer` protocol and
the transparent lexicon scorer; `index` the per-coin sentiment index with time decay, read
point in time; `service` the `NewsService` that polls, deduplicates, tags, scores and hands
new items to a sink. Third-party code only: the app composes the journal and the bus into
the sink (`app.news`).
"""
