"""ecFlow-compatible suite definitions: the node model, the ``.def`` language, expressions, a builder.

Pure data and text: no sockets, no processes.  Names follow ecFlow's Python module so that existing
scripts carry over::

    from ecflow_lab.defs import Defs, Suite, Family, Task, Trigger, Edit, Event, RepeatDate

    defs = Defs("suite.def")                 # parse a file (DefsSyntaxError: file:line:col: expected ..., got ...)
    defs = Defs.from_string(text)            # or text; checkpoints (defs_state ...) keep their runtime state
    defs.check()                             # '' or ecFlow-like error text (unresolved references, limits, ...)
    print(defs)                              # definition text, as ecFlow prints it
    defs.save_as_checkpt("x.check")          # state form (atomic write); Defs("x.check") restores it

    # building: ecFlow's API ...
    s = Defs().add_suite("s"); t = s.add_family("f").add_task("t"); t.add_trigger("a == complete")
    # ... nested constructors, += and with-blocks build the same model
    defs = Defs(Suite("s", Family("f", Task("t", Trigger("a == complete"), Edit(X=1)))))
    with Suite("s") as s:
        with Family("f"):
            Task("t", Event("go"))

    # expressions: parsed lazily, compiled to closures, evaluated against the tree
    t.trigger.evaluate(t); t.trigger.references(); t.trigger.check(t)

Runtime state (node state, flags, tries, passwords, event/meter/label/repeat/limit values, time-attribute
marks, suite calendar) lives on the model objects; see ``nodes.py`` and ``attributes.py`` docstrings.
"""

from __future__ import annotations

from .attributes import (
    Autoarchive,
    Autocancel,
    Autorestore,
    Aviso,
    Clock,
    Cron,
    Date,
    Day,
    Days,
    Edit,
    EndClock,
    Event,
    Extern,
    Generic,
    InLimit,
    Label,
    Late,
    Limit,
    Meter,
    Mirror,
    Queue,
    Repeat,
    RepeatDate,
    RepeatDateList,
    RepeatDateTime,
    RepeatDay,
    RepeatEnumerated,
    RepeatInteger,
    RepeatString,
    Time,
    TimeSeries,
    TimeSlot,
    Today,
    Variable,
    Verify,
    ZombieAttr,
)
from .errors import DefsSyntaxError
from .expression import Complete, Expression, PartExpression, Reference, Trigger
from .nodes import Alias, Defs, Defstatus, Family, Node, NodeContainer, Suite, Task
from .parser import parse_file, parse_node_text, parse_text
from .state import DState, NState, SState, State, computed_state
from .writer import write_defs, write_node, write_state

Zombie = ZombieAttr

__all__ = [
    "Defs", "Suite", "Family", "Task", "Alias", "Node", "NodeContainer",
    "Variable", "Edit", "Event", "Meter", "Label", "Limit", "InLimit",
    "Repeat", "RepeatDate", "RepeatDateList", "RepeatInteger", "RepeatEnumerated", "RepeatString", "RepeatDay",
    "RepeatDateTime",
    "Time", "Today", "Date", "Day", "Days", "Cron", "TimeSlot", "TimeSeries", "Late", "Clock", "EndClock",
    "Autocancel", "Autoarchive", "Autorestore", "Verify", "ZombieAttr", "Zombie", "Queue", "Generic",
    "Aviso", "Mirror", "Extern", "Defstatus",
    "Trigger", "Complete", "Expression", "PartExpression", "Reference",
    "DState", "NState", "State", "SState", "computed_state",
    "DefsSyntaxError",
    "parse_file", "parse_text", "parse_node_text", "write_defs", "write_node", "write_state",
]
