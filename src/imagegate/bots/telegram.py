"""The Telegram bot: ``/image=<model>=<prompt>`` and friends, on the gateway's own services.

Built on python-telegram-bot (the ``telegram`` extra), imported only when the bot runs. It
runs in-process on ``container.Services``: every request is a job submitted through
``JobService`` (so the per-model FIFO queues, keys, quotas, budgets and cache are the ones every
other client shares), as the Telegram user's own imagegate user (``telegram:<id>``, created on
first use with the quotas of ``IMAGEGATE_TELEGRAM__*``).

Each request gets one status message, edited as the job moves (queued at position N of its
model's queue, enhancing, generating), then the photo with a caption; a failure is edited into
the status message with what to do. ``/enhance on|off|default`` keeps the user's own
prompt-enhancement choice on their imagegate user (``users.enhance_prompt``); until they choose,
each model's default applies. Updates are handled one at a time, in order, so queue
positions follow the order people wrote in; following a job runs in its own task.

The token is a ``SecretStr``: it is never logged, and python-telegram-bot's ``InvalidToken``
(whose message contains it) is turned into a message without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from urllib.parse import urlsplit

from telegram import Bot, Message, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

from imagegate.bots import replies
from imagegate.bots.commands import BadCommand, EnhanceCommand, ImageCommand, Question, parse
from imagegate.container import Services
from imagegate.errors import ConfigurationError, ImagegateError
from imagegate.models import (
    GenerationRequest,
    JobStatus,
    Limits,
    Principal,
    RateLimits,
    ResponseFormat,
)
from imagegate.services.jobs import JobOptions, JobView
from imagegate.settings import TelegramSettings

log = logging.getLogger(__name__)

KEY_NAME = "telegram-bot"
"""The name of the key the bot acts with for each of its users."""
FOLLOW_IDLE_SECONDS = 3600.0
_Context = ContextTypes.DEFAULT_TYPE


def user_name_of(telegram_user_id: int) -> str:
    """The imagegate user a Telegram user maps to."""
    return f"telegram:{telegram_user_id}"


def _micro(usd: float | None) -> int | None:
    return None if usd is None else round(usd * 1_000_000)


class TelegramBot:
    def __init__(self, services: Services, settings: TelegramSettings | None = None) -> None:
        self._services = services
        self._settings = settings or services.settings.telegram
        self.default_model = self._settings.default_model or services.settings.default_model
        self._new_user_limits = Limits(
            budget_micro_usd_day=_micro(self._settings.budget_usd_day),
            budget_micro_usd_month=_micro(self._settings.budget_usd_month),
            images_per_day=self._settings.images_per_day,
        )
        self._rate_limits = RateLimits(requests_per_minute=self._settings.requests_per_minute)
        self._following: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    def _application(self) -> Application:  # type: ignore[type-arg]
        token = self._settings.token
        if token is None or not token.get_secret_value():
            raise ConfigurationError(
                "IMAGEGATE_TELEGRAM__TOKEN is not set: create a bot with @BotFather and set its "
                "token",
                param="IMAGEGATE_TELEGRAM__TOKEN",
            )
        root = self._settings.base_url.rstrip("/")
        application = (
            ApplicationBuilder()
            .token(token.get_secret_value())
            .base_url(f"{root}/bot")
            .base_file_url(f"{root}/file/bot")
            .get_updates_read_timeout(self._settings.poll_timeout_seconds + 10)
            .build()
        )
        application.add_handler(MessageHandler(filters.TEXT, self._on_text))
        application.add_error_handler(self._on_error)
        return application

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Receive and answer updates (long polling, or the webhook) until the block ends."""
        application = self._application()
        try:
            await application.initialize()
        except InvalidToken:
            raise ConfigurationError(
                "The Bot API rejected IMAGEGATE_TELEGRAM__TOKEN; check it with @BotFather",
                param="IMAGEGATE_TELEGRAM__TOKEN",
            ) from None
        updater = application.updater
        assert updater is not None  # ApplicationBuilder makes one
        try:
            await application.start()
            if self._settings.mode == "webhook":
                await self._start_webhook(application)
            else:
                await updater.start_polling(
                    timeout=timedelta(seconds=self._settings.poll_timeout_seconds),
                    allowed_updates=["message"],
                )
            log.info("telegram bot running (%s)", self._settings.mode)
            yield
        finally:
            if updater.running:
                await updater.stop()
            for task in list(self._following):
                task.cancel()
            for task in list(self._following):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if application.running:
                await application.stop()
            await application.shutdown()

    async def _start_webhook(self, application: Application) -> None:  # type: ignore[type-arg]
        settings = self._settings
        if not settings.webhook_url:
            raise ConfigurationError(
                "IMAGEGATE_TELEGRAM__MODE=webhook needs IMAGEGATE_TELEGRAM__WEBHOOK_URL",
                param="IMAGEGATE_TELEGRAM__WEBHOOK_URL",
            )
        # Without a secret anyone who finds the URL could post updates as any Telegram user:
        # unset, a fresh one is made for this run (setWebhook hands it to Telegram).
        secret = (
            settings.webhook_secret.get_secret_value()
            if settings.webhook_secret
            else secrets.token_urlsafe(32)
        )
        # The whole path, as a reverse proxy passing the URL's path on unchanged sends it.
        path = urlsplit(settings.webhook_url).path.strip("/")
        assert application.updater is not None
        await application.updater.start_webhook(
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=path,
            webhook_url=settings.webhook_url,
            allowed_updates=["message"],
            secret_token=secret,
        )

    async def _on_error(self, update: object, context: _Context) -> None:
        error = context.error
        log.warning("telegram update failed: %s", type(error).__name__, exc_info=error)

    # -- answering ----------------------------------------------------------------------------

    async def _on_text(self, update: Update, context: _Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.text is None:
            return
        bot, chat_id = context.bot, message.chat_id
        if self._settings.allowlist and user.id not in self._settings.allowlist:
            await bot.send_message(chat_id, replies.not_allowed(user.id))
            return
        command = parse(message.text)
        try:
            if isinstance(command, BadCommand):
                await bot.send_message(chat_id, command.reason)
            elif isinstance(command, ImageCommand):
                await self._image(bot, chat_id, user.id, command)
            elif isinstance(command, EnhanceCommand):
                await bot.send_message(chat_id, await self._enhance(user.id, command))
            elif command is Question.MODELS:
                await bot.send_message(
                    chat_id, replies.models_text(self._model_names(), self.default_model)
                )
            elif command is Question.USAGE:
                principal = await self.principal_for(user.id)
                report = await self._services.usage.report(principal)
                await bot.send_message(chat_id, replies.usage_text(report))
            else:
                enhancer = self._services.generations.enhancer_configured
                await bot.send_message(chat_id, replies.help_text(self.default_model, enhancer))
        except ImagegateError as exc:  # e.g. the user's key was revoked, the database is down
            await bot.send_message(chat_id, replies.failure("imagegate", exc.code, exc.message, ()))

    async def principal_for(self, telegram_user_id: int) -> Principal:
        return await self._services.keys.bot_principal(
            user_name_of(telegram_user_id),
            KEY_NAME,
            limits=self._new_user_limits,
            rate_limits=self._rate_limits,
        )

    async def _enhance(self, user_id: int, command: EnhanceCommand) -> str:
        """Show or set the user's prompt-enhancement choice (kept on their imagegate user)."""
        generations = self._services.generations
        if not generations.enhancer_configured:
            return replies.NO_ENHANCER
        principal = await self.principal_for(user_id)
        choice = command.choice
        if command.show:
            user = await self._services.keys.find_user(principal.user_name)
            choice = None if user is None else user.enhance_prompt
        else:
            await self._services.keys.set_enhance_prompt(principal.user_name, choice)
        return replies.enhance_text(choice, generations.enhanced_by_default())

    def _model_names(self) -> list[str]:
        return sorted(spec.name for spec in self._services.generations.available_models())

    async def _image(self, bot: Bot, chat_id: int, user_id: int, command: ImageCommand) -> None:
        principal = await self.principal_for(user_id)
        window = await self._services.traffic.count_request(principal)
        if window is not None and not window.admitted:
            await bot.send_message(chat_id, replies.rate_limited(window.retry_after))
            return
        names = self._model_names()
        model = self.default_model if command.model is None else command.model
        known = {name.lower(): name for name in names}
        if model.lower() not in known:
            await bot.send_message(chat_id, replies.unknown_model(model, names))
            return
        enhance = None  # each model's default, unless the user chose with /enhance
        if self._services.generations.enhancer_configured:
            account = await self._services.keys.find_user(principal.user_name)
            enhance = None if account is None else account.enhance_prompt
        request = GenerationRequest(
            prompt=command.prompt,
            model=known[model.lower()],
            response_format=ResponseFormat.B64_JSON,  # the photo is sent as bytes
            user=user_name_of(user_id),
            enhance_prompt=enhance,
        )
        options = JobOptions(metadata={"source": "telegram", "telegram_chat_id": chat_id})
        try:
            view = await self._services.jobs.submit(principal, request, options)
        except ImagegateError as exc:
            text = replies.failure(
                known[model.lower()], exc.code, exc.message, names, exc.retry_after
            )
            await bot.send_message(chat_id, text)
            return
        shown = replies.status(view)
        status = await bot.send_message(chat_id, shown)
        task = asyncio.create_task(self._follow(bot, principal, view, status, shown))
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def _follow(
        self, bot: Bot, principal: Principal, first: JobView, status: Message, shown: str
    ) -> None:
        """Edit the status message as the job moves; send the photo when it is done."""
        job_id = first.job.id
        try:
            async for view in self._services.jobs.follow(principal, job_id, FOLLOW_IDLE_SECONDS):
                if view is None:
                    continue
                if view.job.status.finished:
                    await self._finish(bot, status, view)
                    return
                text = replies.status(view)
                if text != shown:
                    await self._edit(status, text)
                    shown = text
        except ImagegateError as exc:
            log.warning("lost track of job %s: %s", job_id, exc.code)
            await self._edit(status, replies.failure(first.job.model, exc.code, exc.message, ()))
        except TelegramError as exc:
            log.warning("could not answer job %s: %s", job_id, type(exc).__name__)

    async def _finish(self, bot: Bot, status: Message, view: JobView) -> None:
        job = view.job
        if job.status is JobStatus.SUCCEEDED and view.images:
            caption = replies.caption(view)
            for image in view.images:
                extension = image.image.mime.partition("/")[2] or "png"
                await bot.send_photo(
                    status.chat_id,
                    image.data,
                    caption=caption,
                    filename=f"{job.id}.{extension}",
                )
            await self._edit(status, replies.DONE)
            return
        if job.status is JobStatus.CANCELED:
            await self._edit(status, replies.CANCELED)
            return
        code, message = (
            ("internal_error", "")
            if job.error is None
            else (
                job.error.code,
                job.error.message,
            )
        )
        await self._edit(status, replies.failure(job.model, code, message, self._model_names()))

    async def _edit(self, status: Message, text: str) -> None:
        try:
            await status.edit_text(text)
        except TelegramError as exc:  # the chat is gone, or Telegram said no: nothing to do
            log.warning("could not edit a status message: %s", type(exc).__name__)


async def run_until(services: Services, stop: asyncio.Event) -> None:
    """Run the bot on ``services`` until ``stop`` is set."""
    async with TelegramBot(services).running():
        await stop.wait()
