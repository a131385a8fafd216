"""OpenAI's Batch API: `/v1/files` and `/v1/batches` on this process' engines."""

FILES_PATH = "/v1/files"
