"""The demo store: the tiny test models, SmolLM2 from its pinned wheel, and the public-domain
text the notebooks and benchmarks read."""
