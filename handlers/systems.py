"""The data map's form (`/dsr systems add`, `/dsr systems edit <name>`): managers add and edit
the systems holding personal data; the submission is checked and saved in its ack."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext

from handlers.deps import deps_of
from handlers.edge import FIELD_ERROR_LIMIT, field_value, text
from handlers.ids import Callback
from handlers.views.common import clip, escape
from handlers.views.request import done_modal
from handlers.views.systems import SYSTEM_BLOCKS
from services.data_map import InvalidSystem, spec_of
from services.errors import NotFound, PermissionDenied


def submit_system(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                  context: BoltContext) -> None:
    data_map, user = deps_of(context).data_map, body["user"]["id"]
    values = view["state"]["values"]
    raw = {field: field_value(values, block) for field, block in SYSTEM_BLOCKS.items()}
    editing = text(view.get("private_metadata"))
    if editing:
        raw["name"] = editing  # the form shows it; a name does not change
    try:
        spec = spec_of(raw)
        system = data_map.edit(spec, actor=user) if editing else data_map.add(spec, actor=user)
    except InvalidSystem as exc:
        ack(response_action="errors",
            errors={SYSTEM_BLOCKS[exc.field]: clip(str(exc), FIELD_ERROR_LIMIT)})
        return
    except (PermissionDenied, NotFound) as exc:  # no field is wrong
        ack(response_action="update", view=done_modal(f":warning: {exc}").to_dict())
        return
    ack(response_action="update", view=done_modal(
        f":file_cabinet: {escape(system.label)} (`{system.name}`) is "
        f"{'updated in' if editing else 'added to'} the data map.").to_dict())


def register(app: App) -> None:
    app.view(Callback.SYSTEM)(submit_system)
