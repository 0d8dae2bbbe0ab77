"""Loading plugins, and the registry of what they provide.

Order: hook specs, built-ins (DEFAULT_PLUGINS), installed packages (entry point
group "topup"), then instance/plugins/*.py. Built-ins take the same
pm.register(module, name) path as everyone else, so they can be disabled by name.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
from pathlib import Path

import pluggy

from topup import hookspecs
from topup.config import resolve_secrets
from topup.payments import NotConfigured
from topup.problems import Problems, recent

log = logging.getLogger(__name__)

DEFAULT_PLUGINS = {
    "sandbox_payment": "topup_plugins.sandbox.payment",
    "sandbox_delivery": "topup_plugins.sandbox.delivery",
    "pix": "topup_plugins.qr.pix",
    "promptpay": "topup_plugins.qr.promptpay",
    "qris": "topup_plugins.qr.qris",
    "upi": "topup_plugins.qr.upi",
    "vietqr": "topup_plugins.qr.vietqr",
    "sepa": "topup_plugins.qr.sepa",
    "xendit": "topup_plugins.xendit",
    "stripe_checkout": "topup_plugins.stripe_checkout",
    "manual": "topup_plugins.manual",
    "vouchers": "topup_plugins.vouchers",
    "digiflazz": "topup_plugins.digiflazz",
    "operator_webhook": "topup_plugins.operator_webhook",
    "receipts": "topup_plugins.receipts",
}


def get_plugin_manager(disabled=(), instance_path: str | None = None) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("topup")
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    for name, module in DEFAULT_PLUGINS.items():
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(module), name)
    for ep in importlib.metadata.entry_points(group="topup"):  # "too new" before "unknown hook"
        if not pm.is_blocked(ep.name) and not pm.has_plugin(ep.name):
            check_hook_api(ep.name, ep.load())
    pm.load_setuptools_entrypoints("topup")
    if instance_path:
        for path in sorted(Path(instance_path, "plugins").glob("*.py")):
            if pm.is_blocked(path.stem):
                continue
            spec = importlib.util.spec_from_file_location(f"topup_instance_plugins.{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            check_hook_api(path.stem, module)
            pm.register(module, path.stem)
    pm.check_pending()  # a misspelt hook name fails here, loudly
    return pm


class PluginIncompatible(Exception):
    """A plugin was written for a newer hook API than this topup has."""


def check_hook_api(name: str, plugin) -> None:
    """Refuse a plugin declaring TOPUP_HOOK_API above ours: it may rely on
    hooks, hook arguments or contract changes this topup does not have."""
    wanted = getattr(plugin, "TOPUP_HOOK_API", None)
    if wanted is None:
        return
    if type(wanted) is not int:
        raise PluginIncompatible(f"plugin {name}: TOPUP_HOOK_API must be an int, not {wanted!r}")
    if wanted > hookspecs.HOOK_API_VERSION:
        raise PluginIncompatible(
            f"plugin {name} needs topup hook API {wanted}, but this topup has "
            f"{hookspecs.HOOK_API_VERSION}: upgrade topup, or install an older version of "
            "the plugin, or disable it (DISABLED_PLUGINS)")


def report(registry) -> dict:
    """What is loaded, for `topup plugins` and the admin: never settings (they hold secrets)."""
    pm = registry.pm
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        rows.append({"name": name, "version": dist.version if dist else None,
                     "hooks": sorted(impl.name for impl in pm.get_hookcallers(plugin) or ())})
    return {"plugins": rows,
            "disabled": sorted(name for name, plugin in pm.list_name_plugin() if plugin is None),
            "payment_providers": sorted(registry.providers),
            "delivery_backends": sorted(registry.backends),
            "errors": dict(registry.errors), "not_configured": sorted(registry.not_configured),
            "problems": _problems()}


def _problems() -> list[dict]:
    """The recorded problems; none, said in the log, if the database cannot be read
    (`topup plugins` is run when things are broken, or before `topup migrate`)."""
    try:
        rows = recent()
    except Exception as exc:
        log.warning("could not read plugin problems from the database (%s)", type(exc).__name__)
        return []
    return [{"plugin": p.plugin, "message": p.message, "count": p.count,
             "first_at": p.first_at.isoformat(), "last_at": p.last_at.isoformat(),
             "process": p.process} for p in rows]


class Registry:
    """The payment providers and delivery backends of one app, built once.

    A plugin that fails to build is left out, its error logged and kept in
    `errors` (this process's; every process with the same settings meets the
    same). One that raises later is contained: logged, and recorded in the
    database for the operator (topup.problems), since it may be a worker's.
    """

    def __init__(self, pm: pluggy.PluginManager, plugin_settings: dict):
        self.pm = pm
        self.errors: dict[str, str] = {}
        self.problems = Problems()
        self.not_configured: list[str] = []
        self.providers = self._build(pm.hook.register_payment_providers, plugin_settings)
        self.backends = self._build(pm.hook.register_delivery_backends, plugin_settings)

    def _build(self, hook, plugin_settings) -> dict:
        """Instantiate each plugin's classes with that plugin's own settings."""
        built = {}
        for impl in hook.get_hookimpls():
            try:
                settings = resolve_secrets(plugin_settings.get(impl.plugin_name, {}))
                classes = impl.function() or ()
            except Exception as exc:  # contained: the rest of the shop goes on
                self._failed_to_build(impl.plugin_name, exc)
                continue
            for cls in classes:
                try:
                    built[cls.id] = cls(settings)
                except NotConfigured:
                    self.not_configured.append(cls.id)
                except Exception as exc:  # one broken class does not hide its siblings
                    self._failed_to_build(impl.plugin_name, exc)
        return built

    def _failed_to_build(self, plugin_id: str, exc: BaseException) -> None:
        self.errors[plugin_id] = f"{type(exc).__name__}: {exc}"
        log.error("plugin %s failed to load: %s", plugin_id, self.errors[plugin_id], exc_info=exc)

    def contain(self, plugin_id: str, exc: BaseException) -> None:
        """A plugin raised while the shop ran: the caller goes on without it."""
        message = f"{type(exc).__name__}: {exc}"
        log.error("plugin %s failed: %s", plugin_id, message, exc_info=exc)
        self.problems.record(plugin_id, message)

    def payment_methods(self, country: str, currency: str, amount=None) -> list:
        """Providers a buyer in country may pay currency with (and amount, if given)."""
        methods = []
        for provider in self.providers.values():
            try:
                if provider.serves(country, currency) and (amount is None or provider.accepts(amount)):
                    methods.append(provider)
            except Exception as exc:
                self.contain(provider.id, exc)
        return methods

    def in_stock(self, product, package) -> bool:
        """Whether product's backend can deliver package now; a backend that
        cannot answer counts as out of stock (never sell what may not arrive)."""
        backend = self.backends.get(product.delivery_backend)
        if backend is None:
            return True  # the account check already tells the buyer the shop cannot deliver
        try:
            return bool(backend.in_stock(package))
        except Exception as exc:
            self.contain(backend.id, exc)
            return False

    def buyer_code(self, order) -> str | None:
        """The backend's code for the buyer of a delivered order (a voucher), if any."""
        backend = self.backends.get(order.product.delivery_backend)
        if backend is None:
            return None
        try:
            return backend.buyer_code(order)
        except Exception as exc:
            self.contain(backend.id, exc)
            return None

    def broadcast_status_changed(self, order, old: str, new: str) -> None:
        for impl in self.pm.hook.order_status_changed.get_hookimpls():
            try:
                impl.function(order=order, old=old, new=new)
            except Exception as exc:  # a broken notifier never undoes a committed change
                self.contain(impl.plugin_name, exc)
