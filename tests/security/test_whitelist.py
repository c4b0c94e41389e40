"""ecFlow white-list files: parsing, read-only vs read-write, per-suite paths, includes, bad files, reload."""

from __future__ import annotations

import pytest

from ecflow_lab.security import AccessDenied, SecurityFileError, WhiteList, whitelist_path

FULL = """\
# the version comes first
4.4.14

# read/write users
uid1        # a comment
uid2
# read-only users
-uid3
-uid4
# suite paths
bill  /suiteX,/suiteB
-fred /suiteX
* /open
-* /public
"""


@pytest.fixture
def wl(tmp_path):
    f = tmp_path / "host.3141.ecf.lists"
    f.write_text(FULL)
    return WhiteList.load(f)


def test_read_write_user_can_read_and_write_everything(wl):
    assert wl.allows("uid1")
    assert wl.allows("uid1", write=True)
    assert wl.allows("uid1", "/any/where", write=True)
    assert wl.allows("uid2", ["/a", "/b/c"], write=True)


def test_read_only_user_can_read_but_not_write(wl):
    assert wl.allows("uid3")
    assert wl.allows("uid3", "/suiteX/f/t")
    assert not wl.allows("uid3", "/suiteX/f/t", write=True)
    assert not wl.allows("uid3", write=True)
    with pytest.raises(AccessDenied, match=r"User uid3 has no write access to /s/t"):
        wl.check("uid3", "/s/t", write=True)
    wl.check("uid3", "/s/t")  # reading is fine: no exception


def test_unlisted_user_is_refused(wl):
    assert not wl.allows("mallory", "/suiteX")
    assert not wl.allows("mallory", "/suiteX", write=True)
    assert not wl.allows("mallory", write=True)
    # ecFlow: a '*' entry, even with paths, lets everybody make reads that name no path (--news)
    assert wl.allows("mallory")
    strict = WhiteList.parse("4.4.14\nuid1\n-uid3 /s\n", source="strict.lists")
    assert not strict.allows("mallory")
    with pytest.raises(AccessDenied, match="mallory has no read access to this server"):
        strict.check("mallory")


def test_per_suite_paths_cover_subtrees_only(wl):
    assert wl.allows("bill", "/suiteX", write=True)
    assert wl.allows("bill", "/suiteX/fam/task", write=True)
    assert wl.allows("bill", "/suiteB/t", write=True)
    assert not wl.allows("bill", "/suiteXY", write=True)  # a prefix is not a parent
    assert not wl.allows("bill", "/suiteC/t", write=True)
    assert not wl.allows("bill", "/suiteC/t")
    # several paths: every one must be allowed
    assert wl.allows("bill", ["/suiteX/a", "/suiteB/b"], write=True)
    assert not wl.allows("bill", ["/suiteX/a", "/suiteC/b"], write=True)
    # a write naming no path (delete_all, shutdown) needs unrestricted access
    assert not wl.allows("bill", write=True)
    assert not wl.allows("bill", [], write=True)
    assert wl.allows("uid1", [], write=True)
    # a read naming no path only needs the user to be listed (ecFlow: --news, --stats)
    assert wl.allows("bill")


def test_read_only_paths(wl):
    assert wl.allows("fred", "/suiteX/t")
    assert not wl.allows("fred", "/suiteX/t", write=True)
    assert not wl.allows("fred", "/suiteB")


def test_star_with_paths_applies_to_every_user(wl):
    assert wl.allows("anyone", "/open/t", write=True)
    assert wl.allows("anyone", "/public/t")
    assert not wl.allows("anyone", "/public/t", write=True)
    assert not wl.allows("anyone", "/private")


def test_star_alone_lets_everybody_write(tmp_path):
    wl = WhiteList.parse("4.4.14\nuid1\n*\n-uid3\n")
    assert wl.allows("whoever", "/x", write=True)
    assert wl.allows("uid3", write=True)


def test_minus_star_makes_everybody_read_only(tmp_path):
    wl = WhiteList.parse("4.4.14\n-*\nadmin\n")
    assert wl.allows("whoever", "/x")
    assert not wl.allows("whoever", "/x", write=True)
    assert wl.allows("admin", "/x", write=True)
    # a file with only -* (ecFlow's server then adds its own user): others still cannot write
    ro = WhiteList.parse("4.4.14\n-*\n", server_user="ops")
    assert not ro.allows("whoever", write=True)
    assert ro.allows("ops", write=True)
    assert not WhiteList.parse("4.4.14\n-*\n").allows("whoever", write=True)


def test_root_path_means_all_suites():
    wl = WhiteList.parse("4.4.14\njoe /\n-ann /,/x\n")
    assert wl.allows("joe", write=True)
    assert wl.allows("joe", "/a/b", write=True)
    assert wl.allows("ann", "/anything")
    assert not wl.allows("ann", "/x", write=True)


def test_repeated_entries_add_up():
    wl = WhiteList.parse("4.4.14\nbill /a\nbill /b\n-bill /c\n")
    assert wl.allows("bill", ["/a", "/b"], write=True)
    assert wl.allows("bill", "/c")
    assert not wl.allows("bill", "/c", write=True)
    wider = WhiteList.parse("4.4.14\n-bill /a\n-bill\n")
    assert wider.allows("bill", "/z")


def test_missing_or_empty_file_allows_everybody(tmp_path):
    missing = WhiteList.load(tmp_path / "nothing.ecf.lists")
    assert missing.everybody_allowed
    assert missing.allows("anyone", "/x", write=True)
    only_version = tmp_path / "v.ecf.lists"
    only_version.write_text("# comment\n4.4.14\n\n# nobody listed\n")
    wl = WhiteList.load(only_version, server_user="ops")
    assert wl.everybody_allowed
    assert wl.allows("anyone", "/x", write=True)


def test_server_user_always_keeps_write_access():
    wl = WhiteList.parse("4.4.14\n-reader\n", server_user="ops")
    assert wl.allows("ops", write=True)
    assert not wl.allows("reader", write=True)
    assert not wl.allows("other")


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("uid1\n", 1, "version number"),
        ("# c\n\nfred\n4.4.14\n", 3, "version number"),
        ("4.4\nuid1\n", 1, "version number"),
        ("3.1.0\nuid1\n", 1, "4.4.5 or later"),
        ("4.4.14\nuid1\nbill fred\n", 3, "one user per line"),
        ("4.4.14\nbill /a,b\n", 2, "start with '/'"),
        ("4.4.14\n/a,/b\n", 2, "user name before the suite paths"),
        ("4.4.14\nuid1\n-\n", 3, "user name after '-'"),
        ("4.4.14\n#include <does_not_exist.lists>\n", 2, "existing file to #include"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, line, expected):
    f = tmp_path / "bad.ecf.lists"
    f.write_text(text)
    with pytest.raises(SecurityFileError) as info:
        WhiteList.load(f)
    err = info.value
    assert err.file == str(f)
    assert err.line == line
    assert expected in str(err)
    assert str(err).startswith(f"{f}:{line}: expected")


def test_include(tmp_path):
    (tmp_path / "team.lists").write_text("# team members\n4.4.14\nalice\n-bob /s1\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "ops.lists").write_text("carol /s2\n")
    main = tmp_path / "main.ecf.lists"
    main.write_text("4.4.14\n#include <team.lists>\n  #include <sub/ops.lists>  # ops\ndave\n")
    wl = WhiteList.load(main)
    assert wl.allows("alice", "/x", write=True)
    assert wl.allows("bob", "/s1/t") and not wl.allows("bob", "/s1/t", write=True)
    assert wl.allows("carol", "/s2", write=True) and not wl.allows("carol", "/s3")
    assert wl.allows("dave", write=True)
    assert not wl.allows("eve")


def test_include_errors_name_the_included_file(tmp_path):
    (tmp_path / "inc.lists").write_text("alice\nbill /a,b\n")
    main = tmp_path / "main.lists"
    main.write_text("4.4.14\n#include <inc.lists>\n")
    with pytest.raises(SecurityFileError) as info:
        WhiteList.load(main)
    assert info.value.file == str(tmp_path / "inc.lists") and info.value.line == 2


def test_include_cycle_is_an_error(tmp_path):
    (tmp_path / "a.lists").write_text("4.4.14\n#include <b.lists>\n")
    (tmp_path / "b.lists").write_text("#include <a.lists>\n")
    with pytest.raises(SecurityFileError, match="cycle"):
        WhiteList.load(tmp_path / "a.lists")


def test_reload_picks_up_changes_and_keeps_old_rules_on_error(tmp_path):
    f = tmp_path / "h.1.ecf.lists"
    f.write_text("4.4.14\nalice\n")
    wl = WhiteList.load(f)
    assert wl.allows("alice", write=True) and not wl.allows("bob")
    f.write_text("4.4.14\n-alice\nbob\n")
    wl.reload()
    assert not wl.allows("alice", write=True) and wl.allows("alice")
    assert wl.allows("bob", write=True)
    f.write_text("4.4.14\nbob carol\n")
    with pytest.raises(SecurityFileError):
        wl.reload()
    assert wl.allows("bob", write=True) and not wl.allows("carol")  # previous rules still in force
    f.unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        wl.reload()  # ecFlow refuses a reload of a missing file
    assert wl.allows("bob", write=True)


def test_whitelist_path_follows_ecf_lists(tmp_path):
    assert whitelist_path(tmp_path, "h", 3141, env={}) == tmp_path / "h.3141.ecf.lists"
    assert whitelist_path(tmp_path, "h", 3141, env={"ECF_LISTS": "ecf.lists"}) == tmp_path / "h.3141.ecf.lists"
    assert whitelist_path(tmp_path, "h", 3141, env={"ECF_LISTS": "my.lists"}) == tmp_path / "my.lists"
    assert whitelist_path(tmp_path, "h", 3141, env={"ECF_LISTS": "/etc/x.lists"}).as_posix() == "/etc/x.lists"
    (tmp_path / "h.3141.ecf.lists").write_text("4.4.14\n-viewer\n")
    wl = WhiteList.for_server(tmp_path, "h", 3141, env={}, server_user="owner")
    assert wl.allows("viewer") and not wl.allows("viewer", write=True) and wl.allows("owner", write=True)


def test_dump_lists_users(wl):
    text = wl.dump()
    assert "User: uid3 has read access" in text
    assert "User: bill /suiteB,/suiteX has read/write access" in text
