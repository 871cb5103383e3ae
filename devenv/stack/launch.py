"""Starting what `up` rendered: `docker compose up` in waves, images named before a pull,
running services told to reread their changed files. Nothing else: planning, rendering
and the port race's retry are `stack.up`'s steps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence

from ..config.settings import Settings
from ..config.state import ProjectState, known_secrets
from ..engine import Compose, Container, Engine
from ..errors import DevenvError, ImageMissingError
from ..render.builds import service_build
from ..render.stackfiles import Rendered
from ..report import mask


def start(engine: Engine, settings: Settings, names: Sequence[str], rendered: Rendered,
          before: Mapping[str, Container], state: ProjectState,
          notify: Callable[[str], None], first: bool = True,
          held: Mapping[str, Callable[[], object]] | None = None) -> None:
    """Create or recreate `names` as rendered. Raises PortRaceError when a planned port was
    taken meanwhile (the caller replans), other errors with every known secret masked.
    A service in `held` starts once its callable returned (its volume is being filled
    meanwhile), while the rest of its wave starts."""
    compose = engine.compose(settings.project, settings.compose_file)
    missing = missing_images(engine, settings, rendered.services)
    if first:
        for name, image in missing:
            notify(f"{name}: image {image} is not on this engine; "
                   "docker compose will try to pull it from its registry")
    built = set(rendered.builds)
    rebuild = needs_rebuild(rendered, state, before)
    notify(f"starting {', '.join(names)}"
           + (f" (building {', '.join(sorted(built))})" if rebuild else ""))
    try:
        for wave in waves(settings, names, before, held or {}):
            up_holding(engine, settings, compose, wave, held or {},
                       build=rebuild and bool(built & set(wave)))
    except DevenvError as exc:
        if isinstance(exc, ImageMissingError) and not exc.image and missing:
            images = ", ".join(image for _name, image in missing)
            are = "images {} are" if len(missing) > 1 else "image {} is"
            exc.message = f"{are.format(images)} not on this engine and could not be pulled"
        secrets = known_secrets(settings, notify)
        exc.message = mask(exc.message, secrets)
        exc.detail = mask(exc.detail, secrets) if exc.detail else exc.detail
        raise
    reload_changed(engine, settings, rendered, before)


def up_holding(engine: Engine, settings: Settings, compose: Compose, wave: Sequence[str],
               held: Mapping[str, Callable[[], object]], build: bool) -> None:
    """`compose up` of the wave; its held services from a second thread: created once the
    project's network exists (the first call creates it, and two calls must not both try
    to), started once their callables returned."""
    now = [s for s in wave if s not in held]
    later = [s for s in wave if s in held]
    if not later or not now:
        for name in later:
            held[name]()
        compose.up(wave, build=build)
        return
    from concurrent.futures import ThreadPoolExecutor

    done, failed = threading.Event(), threading.Event()

    def start_later() -> None:
        # created while their volumes are filled, started as soon as they are
        while not done.is_set() and engine.network(settings.network) is None:
            done.wait(0.05)
        if not failed.is_set():
            compose.create(later)
        for name in later:
            held[name]()
        for c in engine.containers(settings.project) if not failed.is_set() else ():
            if c.service in later and not c.running:
                engine.start_created(c.id)

    with ThreadPoolExecutor(1, thread_name_prefix="devenv-held") as pool:
        future = pool.submit(start_later)
        try:
            compose.up(now, build=build)
        except BaseException:
            failed.set()  # a retry (port race) starts them; Ctrl-C leaves them be
            raise
        finally:
            done.set()
        future.result()


def needs_rebuild(rendered: Rendered, state: ProjectState,
                  before: Mapping[str, Container]) -> bool:
    """A team's build context changed since its last build (or its service is new)."""
    return bool(rendered.build) and (rendered.build != state.build
                                     or not set(rendered.builds) <= set(before))


def waves(settings: Settings, names: Sequence[str], before: Mapping[str, Container],
          held: Collection[str] = ()) -> list[list[str]]:
    """The services to start, in waves: on a cold start the slow initialisers first, so
    their initialisation overlaps the start of the rest; else all in one compose call.
    With a held service (its volume is being filled from a prepared cluster, so there is
    no long initialisation to overlap) one wave: up_holding starts the held one beside
    the rest as soon as it may."""
    if any(s in held for s in names):
        return [list(names)]
    first = [s for s in names if settings.catalog[s].start_first and s not in before]
    rest = [s for s in names if s not in first]
    return [wave for wave in (first, rest) if wave]


def reload_changed(engine: Engine, settings: Settings, rendered: Rendered,
                   before: Mapping[str, Container]) -> None:
    """A running service that declares a reload signal rereads its changed files."""
    updated = {w.path for w in rendered.writes if w.status == "updated"}
    for name in rendered.services:
        spec = settings.catalog[name]
        outputs = {f.removesuffix(".j2") for f in spec.files}
        if spec.reload_signal and outputs & updated and name in before \
                and before[name].running:
            engine.signal(before[name].id, spec.reload_signal)


def missing_images(engine: Engine, settings: Settings,
                   services: Sequence[str]) -> list[tuple[str, str]]:
    """(service, image) for every image Compose will have to pull."""
    missing = []
    for name in services:
        if service_build(settings, settings.catalog[name]) is not None:
            continue
        image = settings.image(name)
        if image and not engine.image_present(image):
            missing.append((name, image))
    return missing
