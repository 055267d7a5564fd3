"""Configuration of the API, the workers and `nst up`: environment variables prefixed NST_."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, SettingsConfigDict

from nst_shared.params import Precision

# Marks a setting whose value (or a URL's password in it) never appears in a log line or a printed message.
SECRET: JsonDict = {"secret": True}


class Settings(BaseSettings):
    """Every setting, with its environment variable NST_<NAME>; docs/settings.md lists them."""

    model_config = SettingsConfigDict(env_prefix="NST_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for the queue and job records (its password, if any, is a secret: logged as ***).",
        json_schema_extra=SECRET,
    )
    redis_ca_file: str = Field(
        "",
        description="CA certificate (PEM) that the certificate of a rediss:// (TLS) Redis is checked "
        "against; empty: the system's CAs.",
    )
    redis_connect_timeout_s: float = Field(3.0, description="Seconds to connect to Redis before counting it away.")
    redis_socket_timeout_s: float = Field(
        5.0,
        description="Seconds a worker waits for a Redis reply (progress, heartbeat, status) before counting "
        "Redis away: under a silent network cut a write fails instead of landing minutes later.",
    )
    storage_dir: Path = Field(
        Path("var/storage"), description="Folder for inputs, previews and results, shared by the API and the workers."
    )
    storage_url: str = Field(
        "",
        description="s3://bucket/prefix to keep job files in an S3-compatible bucket "
        "(workers on other machines need only Redis and the bucket); empty: NST_STORAGE_DIR.",
    )
    s3_endpoint_url: str = Field(
        "",
        description="S3 endpoint, e.g. http://minio:9000 for MinIO (empty: AWS). "
        "Credentials: the standard AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )
    s3_region: str = Field("", description="S3 region (empty: boto3's default, AWS_DEFAULT_REGION).")
    s3_connect_timeout_s: float = Field(3.0, description="Seconds to connect to S3 before the call fails.")
    s3_read_timeout_s: float = Field(10.0, description="Seconds S3 may take to answer a call before it fails.")
    s3_max_attempts: int = Field(3, description="Attempts of one S3 call (botocore's retries) before it fails.")
    queue_name: str = Field("nst", description="RQ queue name.")
    device: str = Field("auto", description="Worker device: auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps.")
    precision: Precision = Field(
        "auto",
        description="Number format of the worker's network: auto (bf16 on GPUs that have it and on CPUs "
        "where it measures 1.5x faster, e.g. with AMX, measured once per machine and cached; fp32 elsewhere), "
        "fp32, bf16.",
    )
    cache_dir: str = Field(
        "",
        description="Folder where a worker keeps what it measures once per machine (the CPU's precision "
        "decision); empty: $XDG_CACHE_HOME/nst, else ~/.cache/nst.",
    )
    cudnn_benchmark: Literal["all", "whole", "off"] = Field(
        "all",
        description="Where a GPU worker lets cuDNN time its algorithms at each new image shape: all (every scale "
        "and block), whole (whole-image scales only), off. bench/gpu_check.sh prints which pays on the card.",
    )
    engine: str = Field(
        "nst_core.transfer:StyleTransfer", description="Import path of the engine class a worker builds once."
    )
    max_upload_bytes: int = Field(20 * 2**20, description="Largest accepted image file.")
    max_request_bytes: int = Field(64 * 2**20, description="Largest accepted request body.")
    max_uploads_in_flight: int = Field(
        32,
        description="Job submissions an API process receives at once, at most (each may hold "
        "NST_MAX_REQUEST_BYTES of body); past it, 503 with Retry-After.",
    )
    max_styles: int = Field(4, description="Most style images per job.")
    max_image_pixels: int = Field(40_000_000, description="Most pixels in an uploaded image.")
    max_decoding_pixels: int = Field(
        80_000_000,
        description="Pixels the API decodes at once at most while it "
        "checks uploads (a JPEG counts 1/64: its headers are decoded at 1/8 scale); bounds "
        "its memory, other uploads wait.",
    )
    max_size_px: int = Field(
        1024,
        description="Largest output size (longest side) a job may ask for (print sizes "
        "up to 8192 when raised; a job no worker's memory holds is refused).",
    )
    worker_memory_gb: float = Field(
        0.0,
        description="Memory a worker's engine may use at its peak; larger pictures "
        "are painted in blocks, and the API refuses what fits no worker (0: 90% of a "
        "GPU; on a CPU half the RAM, at most 5 GB). Set for the API too, it checks jobs "
        "against it while no worker is alive (workers scaled to zero).",
    )
    workers_per_gpu: int = Field(
        1,
        description="Workers that share each GPU (nst up sets it when it starts more workers than GPUs): each "
        "takes this share of 90% of the memory free on the GPU when the first of them started, unless "
        "NST_WORKER_MEMORY_GB is set.",
    )
    max_steps: int = Field(1000, description="Most steps a job may ask for.")
    max_queued_jobs: int = Field(1000, description="Jobs waiting at most; more are refused with 503.")
    max_sweep_cells: int = Field(16, description="Cells (jobs) of one sweep at most.")
    result_ttl_s: int = Field(24 * 3600, description="How long finished jobs and their files are kept.")
    job_timeout_base_s: int = Field(120, description="Fixed part of a job's time limit.")
    job_timeout_per_mpx_step_s: float = Field(
        40.0, description="Time limit per megapixel-step of the job's schedule (CPU scale)."
    )
    heartbeat_interval_s: float = Field(5.0, description="How often a busy worker proves it is alive.")
    heartbeat_ttl_s: int = Field(
        30,
        description="A running job without a heartbeat this long is worker_lost; also how long a worker's "
        "presence, GPU share and webhook sender outlive its last renewal.",
    )
    reaper_interval_s: float = Field(
        10.0, description="How often the sweeper runs (lost jobs, deadlines, expired files; the name predates it)."
    )
    orphan_grace_s: float = Field(300.0, description="Age after which files without a job record are deleted.")
    queued_grace_s: float = Field(
        60.0,
        description="Age after which a queued job that RQ holds no job for (a "
        "crash cut its submission or requeue short) is queued again.",
    )
    sse_keepalive_s: float = Field(15.0, description="Seconds between keep-alive comments on event streams.")
    webhook_secret: str = Field(
        "",
        description="HMAC key that signs webhook deliveries; webhooks are refused while it is empty.",
        json_schema_extra=SECRET,
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        description="Hosts or CIDRs webhooks may reach even "
        'though private or loopback (JSON list, e.g. ["127.0.0.1/32"]).',
    )
    webhook_max_attempts: int = Field(5, description="Delivery attempts before a webhook is given up.")
    webhook_backoff_s: float = Field(2.0, description="First retry delay; it doubles on each attempt.")
    webhook_timeout_s: float = Field(
        10.0,
        description="Time limit of one delivery as a whole (the receiver's answer: its status only; no body is read).",
    )
    webhook_progress_interval_s: float = Field(
        5.0, description="A job's `progress` webhook deliveries come at most this often."
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (off when empty).")
    api_keys: str = Field(
        "",
        description="API keys, a JSON list or comma-separated; when set, every /jobs "
        "request needs one and sees only its own jobs (open when empty).",
        json_schema_extra=SECRET,
    )
    link_secret: str = Field(
        "",
        description="HMAC key of the signed links for event streams, results and "
        "previews (derived from the API keys when empty).",
        json_schema_extra=SECRET,
    )
    link_ttl_s: int = Field(3600, description="How long a signed link stays valid.")
    metrics_token: str = Field(
        "",
        description="Bearer token that GET /metrics requires (Prometheus' "
        "`authorization` credentials); empty: open without API keys, any API key with them.",
        json_schema_extra=SECRET,
    )
    rate_limit_requests_per_min: int = Field(
        600, description="Requests to /jobs per key (or client IP without keys) per minute; 0 = no limit."
    )
    rate_limit_submissions_per_min: int = Field(
        30, description="Job submissions per key (or client IP) per minute; 0 = no limit."
    )
    rate_limit_auth_failures_per_min: int = Field(
        10,
        description="Requests with a wrong API key per client "
        "address per minute; past it every request from that address "
        "is answered 429 before its key is checked; 0 = no limit.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of reverse proxies "
        "whose X-Forwarded-For names the client (JSON list); from any other peer "
        "the header is ignored.",
    )
    max_step_megapixels: float = Field(
        500.0, description="Budget of a job: steps x megapixels summed over the scales of its schedule, at most."
    )
    max_video_frames: int = Field(300, description="Most frames in a clip (its headers' count).")
    max_video_duration_s: float = Field(30.0, description="Longest clip, in seconds.")
    max_video_frame_pixels: int = Field(
        8_294_400, description="Most pixels in a clip's frame as uploaded (3840x2160); the painting is max_size."
    )
    max_video_step_megapixels: float = Field(
        10_000.0,
        description="Budget of a clip: steps x megapixels of its first frame's schedule, plus frame_steps x "
        "megapixels for each later frame, at most.",
    )
    video_probe_timeout_s: float = Field(
        10.0, description="Seconds the API's child process may take to read a clip's headers before it is refused."
    )
    video_probe_memory_mb: int = Field(
        1024, description="Address space of the API's child process that reads a clip's headers, in MB."
    )
    redis_max_connections: int = Field(
        1000,
        description="Redis connections an API process opens at most (each open event stream holds one while it waits).",
    )
    max_open_streams: int = Field(
        500,
        description="Event streams an API process keeps open at once, at most (never more than half of "
        "NST_REDIS_MAX_CONNECTIONS, so other requests always find a connection); past it, 503 with Retry-After.",
    )
    max_streams_per_key: int = Field(
        20, description="Event streams one API key (or client address without keys) keeps open at once; past it, 429."
    )
    retry_lost_jobs: int = Field(
        0,
        description="Times a job whose worker died is queued again before it fails as worker_lost "
        "(a job a stopping worker requeued on SIGTERM is not counted).",
    )
    log_format: Literal["json", "text"] = Field(
        "json",
        description="Log lines of the API and the workers: json "
        "(one object a line, with job_id and request_id) or text.",
    )
    log_level: str = Field("INFO", description="Level of the API's and the workers' logs.")


def secret_settings() -> list[str]:
    """The names of the settings marked secret."""
    return [name for name, info in Settings.model_fields.items() if info.json_schema_extra == SECRET]


def redacted_url(url: str) -> str:
    """`url` with its password (and a lone user name, as Redis takes a password there too) shown as ***."""
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    user = f"{parts.username}:" if parts.password is not None and parts.username else ""
    host = parts.hostname or ""
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()
