"""serverless-textgen engine: model stores, backends and generation, free of any HTTP concern."""
