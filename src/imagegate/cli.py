"""The ``imagegate`` command: serve, migrate, keys, generate.

Every command builds the same services as the server (``container.build_services``); nothing
here knows about providers, storage or SQL. Exit codes: 0 ok, 1 the operation failed, 2 bad
settings or arguments.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Column, Table

from imagegate.container import Services, build_services
from imagegate.errors import ConfigurationError, ImagegateError
from imagegate.models import (
    ApiKey,
    GenerationRequest,
    Limits,
    OutputFormat,
    RateLimits,
    ResponseFormat,
    Role,
)
from imagegate.observability.logging import configure_logging
from imagegate.observability.metrics_listener import metrics_listener
from imagegate.services.keys import IssuedKey, expiry_from
from imagegate.services.usage import UsageGrouping, UsageReport, UsageTally, format_usd
from imagegate.settings import Settings, load_settings

app = typer.Typer(
    help="imagegate: a self-hostable image-generation gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
bot_app = typer.Typer(help="Chat bots on the gateway's own services.", no_args_is_help=True)
app.add_typer(bot_app, name="bot")

T = TypeVar("T")
err = Console(stderr=True)

_EXTENSIONS = {
    ".png": OutputFormat.PNG,
    ".jpg": OutputFormat.JPEG,
    ".jpeg": OutputFormat.JPEG,
    ".webp": OutputFormat.WEBP,
}


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Let glibc's malloc keep at most ``arenas`` heaps for the whole process.

    By default each thread that allocates may get a heap of its own (up to eight per core),
    and each keeps the memory it once held: with the executor's and the SQLite connections'
    threads, that was about 2 MiB more peak RSS under load (docs/benchmarks.md). Two serve this
    process, whose threads mostly wait for the GIL anyway. Called before any thread starts; a
    no-op off glibc, and when ``MALLOC_ARENA_MAX`` is set (it then rules, as glibc documents).
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and others: nothing to tune
        return
    m_arena_max = -8  # from glibc's malloc.h
    libc.mallopt(m_arena_max, arenas)


def _run(work: Callable[[Services], Awaitable[T]], settings: Settings | None = None) -> T:
    """Build the services, run ``work`` with them, close them; errors become exit codes."""

    async def main() -> T:
        context: AbstractAsyncContextManager[Services] = build_services(settings or load_settings())
        async with context as services:
            return await work(services)

    try:
        return asyncio.run(main())
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(2) from None
    except ImagegateError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    no_workers: Annotated[
        bool,
        typer.Option(
            "--no-workers", help="Run no job workers in this process (use `imagegate worker`)."
        ),
    ] = False,
) -> None:
    """Apply migrations, print the first admin key if there is none yet, and serve HTTP (with a
    job worker inside, unless --no-workers)."""
    _limit_malloc_arenas()
    import uvicorn

    from imagegate.api.app import create_app
    from imagegate.api.header_limit import BoundedHttpToolsProtocol

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(2) from None
    server = settings.server.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    if no_workers:
        jobs = settings.jobs.model_copy(update={"embedded_workers": False})
        settings = settings.model_copy(update={"jobs": jobs})

    configure_logging(settings)

    async def start(services: Services) -> tuple[IssuedKey | None, dict[str, str]]:
        issued = await services.keys.ensure_bootstrap_admin()
        return issued, services.providers.report().providers

    issued, providers = _run(start, settings)
    for name, status in providers.items():
        if status != "ok":
            err.print(f"[yellow]provider {name}: {status}[/yellow] (its models are not served)")
    if issued is not None:
        typer.echo(
            "\nFirst start: created the admin API key (shown once, stored only as a hash):\n\n"
            f"    {issued.secret}\n\n"
            f"Its webhook signing secret (also shown once): {issued.webhook_secret}\n"
        )
    typer.echo(f"imagegate on {settings.base_url}  ·  API docs: {settings.base_url}/docs")
    if settings.metrics_bind:
        typer.echo(f"metrics, without authentication: http://{settings.metrics_bind}/metrics")
    uvicorn.run(
        create_app(settings=settings),
        host=server.host,
        port=server.port,
        access_log=server.access_log,
        http=BoundedHttpToolsProtocol.with_limit(settings.requests.max_header_bytes),
        log_config=None,  # configure_logging's handler renders uvicorn's lines too
    )


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once [default: IMAGEGATE_JOBS__CONCURRENCY, 8]."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Lease owner name [default: worker-<random>].")
    ] = None,
) -> None:
    """Run queued jobs until SIGTERM or Ctrl-C, then finish or put back the running ones and
    exit 0. Run several against one PostgreSQL database to scale out."""
    from imagegate.queue.worker import Worker

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(2) from None
    if concurrency is not None:
        jobs = settings.jobs.model_copy(update={"concurrency": concurrency})
        settings = settings.model_copy(update={"jobs": jobs})
    configure_logging(settings)

    async def work(services: Services) -> None:
        running = Worker.for_services(services, name)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, running.stop)
        async with metrics_listener(services.metrics, settings.metrics_address):
            err.print(f"{running.owner}: running up to {settings.jobs.concurrency} jobs at once")
            await running.run()
        err.print(f"{running.owner}: stopped")

    _run(work, settings)


@bot_app.command("telegram")
def bot_telegram(
    no_workers: Annotated[
        bool,
        typer.Option(
            "--no-workers", help="Run no job workers in this process (use `imagegate worker`)."
        ),
    ] = False,
) -> None:
    """Run the Telegram bot (IMAGEGATE_TELEGRAM__*) until SIGTERM or Ctrl-C, with a job worker
    inside unless --no-workers. Needs the `telegram` extra."""
    try:
        from imagegate.bots.telegram import run_until
    except ImportError:
        err.print(
            "[red]error:[/red] the Telegram bot needs python-telegram-bot: "
            "pip install 'imagegate[telegram]'"
        )
        raise typer.Exit(2) from None
    from imagegate.queue.worker import embedded_workers

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(2) from None
    if no_workers:
        jobs = settings.jobs.model_copy(update={"embedded_workers": False})
        settings = settings.model_copy(update={"jobs": jobs})
    configure_logging(settings)

    async def work(services: Services) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with embedded_workers(services):
            err.print("telegram bot: running (Ctrl-C stops it)")
            await run_until(services, stop)
        err.print("telegram bot: stopped")

    _run(work, settings)


@app.command()
def migrate() -> None:
    """Apply pending database migrations (also done on start when auto_migrate is on)."""
    settings = load_settings().model_copy(deep=True)
    settings.database.auto_migrate = True
    _run(lambda _: asyncio.sleep(0), settings)
    typer.echo("database is up to date")


BudgetDay = Annotated[
    float | None, typer.Option("--budget-usd-day", help="USD per UTC day.", show_default=False)
]
BudgetMonth = Annotated[
    float | None,
    typer.Option("--budget-usd-month", help="USD per UTC month.", show_default=False),
]
PerMinute = Annotated[
    int | None, typer.Option(help="Images per minute.", min=0, show_default=False)
]
PerDay = Annotated[int | None, typer.Option(help="Images per UTC day.", min=0, show_default=False)]
RequestsPerMinute = Annotated[
    int | None,
    typer.Option(
        help="Requests per minute on the image routes; 0 = unlimited "
        "[default: IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE].",
        min=0,
        show_default=False,
    ),
]
Concurrency = Annotated[
    int | None,
    typer.Option(
        help="Generations calling a provider at once (more wait in line); 0 = unlimited "
        "[default: IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS].",
        min=0,
        show_default=False,
    ),
]


def _limits(
    budget_usd_day: float | None,
    budget_usd_month: float | None,
    images_per_minute: int | None,
    images_per_day: int | None,
) -> Limits:
    def micro(usd: float | None) -> int | None:
        if usd is not None and usd < 0:
            raise typer.BadParameter("budgets cannot be negative")
        return None if usd is None else round(usd * 1_000_000)

    return Limits(micro(budget_usd_day), micro(budget_usd_month), images_per_minute, images_per_day)


ExpiresIn = Annotated[
    str | None,
    typer.Option(
        help="The key stops working after this long: 90m, 12h, 30d, 2w.", show_default=False
    ),
]
ExpiresAt = Annotated[
    datetime | None,
    typer.Option(
        help="The key stops working at this moment (UTC unless an offset is given).",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"],
        show_default=False,
    ),
]


def _expiry(expires_in: str | None, expires_at: datetime | None) -> datetime | None:
    try:
        return expiry_from(expires_in, expires_at, datetime.now(UTC))
    except ImagegateError as exc:
        raise typer.BadParameter(exc.message) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key (and its user, if new).")],
    role: Annotated[Role, typer.Option(help="Role of a new user.")] = Role.USER,
    user: Annotated[
        str | None, typer.Option(help="Existing or new user name [default: NAME].")
    ] = None,
    budget_usd_day: BudgetDay = None,
    budget_usd_month: BudgetMonth = None,
    images_per_minute: PerMinute = None,
    images_per_day: PerDay = None,
    requests_per_minute: RequestsPerMinute = None,
    concurrency: Concurrency = None,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
) -> None:
    """Create a key and print only the secret on stdout (it is shown once)."""
    limits = _limits(budget_usd_day, budget_usd_month, images_per_minute, images_per_day)
    rate_limits = RateLimits(requests_per_minute, concurrency)
    expiry = _expiry(expires_in, expires_at)
    issued = _run(
        lambda services: services.keys.create(name, role, user, limits, rate_limits, expiry)
    )
    typer.echo(issued.secret)
    err.print(f"webhook signing secret (shown once): {issued.webhook_secret}")


@keys_app.command("update")
def keys_update(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as listed.")],
    budget_usd_day: BudgetDay = None,
    budget_usd_month: BudgetMonth = None,
    images_per_minute: PerMinute = None,
    images_per_day: PerDay = None,
    requests_per_minute: RequestsPerMinute = None,
    concurrency: Concurrency = None,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="The key never expires.")] = False,
) -> None:
    """Set all of the key's limits: a budget or quota not given is removed (unlimited), a
    traffic limit not given goes back to the configured default. Given only --expires-in,
    --expires-at or --no-expiry, it changes the expiry and leaves the limits as they are."""
    limit_values = (budget_usd_day, budget_usd_month, images_per_minute, images_per_day)
    traffic_values = (requests_per_minute, concurrency)
    expiry = _expiry(expires_in, expires_at)
    if no_expiry and expiry is not None:
        raise typer.BadParameter("--no-expiry contradicts --expires-in/--expires-at")
    if expiry is not None or no_expiry:
        updated = _run(lambda services: services.keys.set_expiry(prefix, expiry))
        if all(v is None for v in (*limit_values, *traffic_values)):
            typer.echo(f"updated {len(updated)} key(s): {', '.join(k.name for k in updated)}")
            return
    limits = _limits(*limit_values)
    rate_limits = RateLimits(*traffic_values)
    updated = _run(lambda services: services.keys.set_limits(prefix, limits, rate_limits))
    typer.echo(f"updated {len(updated)} key(s): {', '.join(k.name for k in updated)}")


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List keys (prefixes only: secrets are never stored)."""
    keys = _run(lambda services: services.keys.list_keys(include_revoked=all_keys))
    table = Table(
        "prefix", "name", "user", "role", "rpm", "concurrency", "created", "expires", "last used",
        "revoked",
    )  # fmt: skip
    for key in keys:
        table.add_row(
            key.prefix,
            key.name,
            key.user_name,
            key.role.value,
            *_traffic_cells(key),
            *(f"{t:%Y-%m-%d %H:%M}" if t else "" for t in (key.created_at, key.expires_at)),
            f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    _print_uncropped(table)


def _traffic_cells(key: ApiKey) -> tuple[str, str]:
    """The key's own requests per minute and concurrency: a number, unlimited or default."""

    def cell(value: int | None) -> str:
        return "default" if value is None else "unlimited" if value == 0 else str(value)

    own = key.rate_limits
    return cell(own.requests_per_minute), cell(own.concurrent_generations)


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as listed.")],
) -> None:
    """Revoke every active key with PREFIX; requests with it are refused from then on."""
    revoked = _run(lambda services: services.keys.revoke(prefix))
    typer.echo(f"revoked {len(revoked)} key(s): {', '.join(k.name for k in revoked)}")


def _usage_row(label: str, t: UsageTally) -> tuple[str, ...]:
    counts = (
        t.requests,
        t.images,
        t.generated,
        t.cache_hit + t.semantic_hit,
        t.coalesced,
        t.failed,
    )
    money = (t.spend_micro_usd, t.saved_micro_usd)
    return (label, *(str(count) for count in counts), *(format_usd(m) for m in money))


@app.command()
def usage(
    start: Annotated[
        datetime | None,
        typer.Option(
            "--from", help="Included; UTC (default: start of this month).", metavar="DATE"
        ),
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--to", help="Excluded; UTC (default: now).", metavar="DATE")
    ] = None,
    group_by: Annotated[
        UsageGrouping | None, typer.Option("--group-by", help="Split the totals.")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="One user's name or id (default: every user).")
    ] = None,
) -> None:
    """Requests, images, spend and savings, read in-process as the local admin."""

    async def work(services: Services) -> UsageReport:
        principal = await services.keys.local_cli_principal()
        return await services.usage.report(
            principal, start=start, end=end, group_by=group_by, user=user
        )

    report = _run(work)
    period = f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"
    figures = ("requests", "images", "generated", "cache hits", "coalesced", "failed")
    table = Table(
        report.group_by.value if report.group_by else "",
        *(
            Column(header, justify="right", no_wrap=True)
            for header in (*figures, "spend USD", "saved USD")
        ),
        title=f"Usage of {report.user or 'every user'}, {period}",
    )
    for group in report.groups:
        label = group.key or "(none)"
        table.add_row(*_usage_row(f"{label} {group.key_name}" if group.key_name else label, group))
    table.add_section()
    table.add_row(*_usage_row("total", report.totals), style="bold")
    _print_uncropped(table)


def _print_uncropped(table: Table) -> None:
    """Never "0.00…" or "ig_AxE5…": a table wider than the terminal (which then wraps) beats
    a cropped figure or key prefix."""
    console = Console()
    natural = Measurement.get(console, console.options.update_width(1_000), table).maximum
    Console(width=max(console.width, natural)).print(table)


@app.command()
def providers(
    url: Annotated[
        str | None,
        typer.Option(help="Gateway URL [default: IMAGEGATE_PUBLIC_URL or bind address]."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="IMAGEGATE_API_KEY", help="An admin key.", show_default=False),
    ] = None,
) -> None:
    """Show a running gateway's providers and the circuit state of every route target."""
    import httpx

    if not api_key:
        err.print("[red]error:[/red] pass --api-key or set IMAGEGATE_API_KEY (an admin key)")
        raise typer.Exit(2)
    base = (url or load_settings().base_url).rstrip("/")
    try:
        response = httpx.get(
            f"{base}/v1/providers", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {base}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        message = response.json().get("error", {}).get("message", response.text)
        err.print(f"[red]error:[/red] HTTP {response.status_code}: {message}")
        raise typer.Exit(1)
    report = response.json()
    table = Table("provider", "status")
    for name, status in report["providers"].items():
        table.add_row(name, status)
    Console().print(table)
    targets = Table("route target", "circuit")
    for name, state in report["targets"].items():
        targets.add_row(name, state)
    Console().print(targets)


def _output_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, count + 1)]


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="File to write (.png/.jpg/.webp).")
    ],
    model: Annotated[str | None, typer.Option(help="Model [default: the default model].")] = None,
    size: Annotated[str | None, typer.Option(help="WxH, e.g. 1024x1024.")] = None,
    n: Annotated[int, typer.Option("-n", help="How many images (files get -1, -2, ...).")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed, where the model takes one.")] = None,
) -> None:
    """Generate images in-process (no server needed) and write them to files."""
    output_format = _EXTENSIONS.get(output.suffix.lower())
    if output_format is None:
        err.print(f"[red]error:[/red] --output must end in one of {', '.join(_EXTENSIONS)}")
        raise typer.Exit(2)
    request = GenerationRequest(
        prompt=prompt,
        model=model,
        n=n,
        size=size,
        seed=seed,
        output_format=output_format,
        response_format=ResponseFormat.B64_JSON,
    )

    async def work(services: Services) -> list[Path]:
        principal = await services.keys.local_cli_principal()
        with err.status(f"Generating {n} image(s)…", spinner="dots"):
            result = await services.generations.generate(principal, request)
        paths = _output_paths(output, len(result.images))
        for path, image in zip(paths, result.images, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image.data)
        return paths

    for path in _run(work):
        typer.echo(str(path))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


@app.command()
def cleanup(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be removed.")
    ] = False,
) -> None:
    """Remove orphan blobs, expired cache entries and images past IMAGEGATE_RETENTION_DAYS;
    make missing thumbnails again from their images; report records whose image is missing.
    Blobs younger than IMAGEGATE_CLEANUP_GRACE_SECONDS are always kept."""
    from rich.progress import Progress  # only this command draws a bar

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("cleanup", total=None)

        def progress(step: str, done: int, total: int | None) -> None:
            bar.update(task, description=step, completed=done, total=total)

        report = _run(
            lambda services: services.maintenance.cleanup(dry_run=dry_run, progress=progress)
        )
    verb = "would remove" if dry_run else "removed"
    table = Table(
        "category",
        Column("count", justify="right"),
        Column("bytes", justify="right"),
        title=f"cleanup{' (dry run: nothing removed)' if dry_run else ''}",
    )
    labels = {
        "orphan_blobs": f"orphan blobs ({verb})",
        "young_orphans_kept": "young unreferenced blobs (kept)",
        "repaired_thumbnails": f"missing thumbnails {'to remake' if dry_run else 'remade'}",
        "missing_blobs": "records whose blob is missing, unrepairable (reported)",
        "expired_cache_entries": f"expired cache entries ({verb})",
        "expired_images": f"images past retention ({verb})",
    }
    for name, tally in report.tallies().items():
        table.add_row(labels[name], str(tally.count), _size(tally.bytes))
    _print_uncropped(table)
    for image_id in report.repaired_records:
        typer.echo(f"{'would remake' if dry_run else 'remade'} thumbnail: image {image_id}")
    for image_id in report.missing_records:
        typer.echo(f"missing blob: image {image_id}")


def main() -> None:
    # Commands that load settings themselves (migrate, or any added later) get the same clear
    # message and exit code 2 as the ones going through _run, never a traceback.
    try:
        app(prog_name="imagegate")
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
