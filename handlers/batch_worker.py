"""Batch workers on AWS: each takes chunk messages from the batch queue and runs them on a
generation service of its own (handlers/batch_api/runner.py).

- `handler`: a Lambda function with an SQS event source (template.yaml), through Powertools'
  batch utility with ReportBatchItemFailures: a chunk that fails is reported, only its message
  comes back; the others are deleted.
- `poll`: `textgen batch-worker` on a GPU container or any machine, polling the queue as
  Lambda's poller does; a message is deleted once its chunk is done, so a worker killed
  mid-chunk leaves it to come back after the queue's visibility timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import cache
from typing import Any

from handlers.batch_api.aws import read_chunk_message
from handlers.batch_api.runner import BatchRunner
from handlers.batch_api.setup import blobs_for, runner_for
from handlers.openai_api.serving import OpenAIServing
from textgen.service import GenerationService
from textgen.settings import Settings, get_settings
from textgen.store import open_store

logger = logging.getLogger(__name__)


def make_runner(settings: Settings) -> tuple[BatchRunner, GenerationService]:
    if not settings.batch_queue_url:
        raise SystemExit("a batch worker needs BATCH_BUCKET and BATCH_QUEUE_URL")
    service = GenerationService(settings, open_store(settings.model_store, settings))
    serving = OpenAIServing(service)
    return runner_for(settings, serving, blobs_for(settings)), service


async def poll(
    settings: Settings, sqs: Any, chunks_at_once: int, idle_exit_s: float | None
) -> None:
    """Run chunks as they come, `chunks_at_once` together (their lines share the engines'
    rows); return after `idle_exit_s` without one (never, where None)."""
    runner, service = make_runner(settings)
    url = settings.batch_queue_url
    idle_since = time.monotonic()
    try:
        while idle_exit_s is None or time.monotonic() - idle_since < idle_exit_s:
            got = await asyncio.to_thread(
                sqs.receive_message,
                QueueUrl=url,
                MaxNumberOfMessages=chunks_at_once,
                WaitTimeSeconds=1 if idle_exit_s is not None else 20,
            )
            messages = got.get("Messages", [])
            if messages:
                await asyncio.gather(*(_run(runner, sqs, url, m) for m in messages))
                idle_since = time.monotonic()
    finally:
        service.close(0)


async def _run(runner: BatchRunner, sqs: Any, url: str | None, message: dict[str, Any]) -> None:
    try:
        await runner.run_chunk(*read_chunk_message(message["Body"]))
    except Exception:  # the message comes back after the visibility timeout (DLQ at last)
        logger.exception("chunk message %s failed", message.get("MessageId"))
        return
    await asyncio.to_thread(
        sqs.delete_message, QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
    )


@cache
def _lambda_runner() -> BatchRunner:
    return make_runner(get_settings())[0]  # once per execution environment


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda function's entry point for SQS events of chunk messages."""
    from aws_lambda_powertools.utilities.batch import (
        AsyncBatchProcessor,
        EventType,
        async_process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    runner = _lambda_runner()

    async def run_record(record: SQSRecord) -> None:
        await runner.run_chunk(*read_chunk_message(record.body))

    processor = AsyncBatchProcessor(event_type=EventType.SQS)
    response = async_process_partial_response(
        event=event, record_handler=run_record, processor=processor, context=context
    )
    return dict(response)  # {"batchItemFailures": [{"itemIdentifier": message id}, ...]}
