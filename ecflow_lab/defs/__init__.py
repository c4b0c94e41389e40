"""ecFlow-compatible suite definitions: the node model, the ``.def`` language, expressions, a builder.

Pure data and text: no sockets, no processes.  Names follow ecFlow's Python module so that existing
scripts carry over::

    from ecflow_lab.defs import Defs, Suite, Family, Task, Trigger, Edit
    defs = Defs(Suite("s", Family("f", Task("t", Trigger("a == complete"), Edit(X=1)))))
    defs = Defs("suite.def")            # parse a file (raises DefsSyntaxError)
    print(defs)                          # definition text
    defs.check()                         # '' or the error text
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
