"""ecFlow's Python API spells node names as a method: scripts written for ecFlow must keep working."""

from ecflow_lab import Defs


def test_node_name_is_both_attribute_and_ecflow_method():
    defs = Defs()
    task = defs.add_suite("s").add_family("f").add_task("t1")
    assert task.name == "t1"
    assert task.name() == "t1"
    assert type(task.name()) is str
    assert [n.name() for n in defs.get_all_nodes()] == ["s", "f", "t1"]
    # a parsed definition behaves the same way
    parsed = Defs.from_string(str(defs))
    assert parsed.find_abs_node("/s/f/t1").name() == "t1"
