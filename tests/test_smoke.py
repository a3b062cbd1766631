from offsync import Identity, Replica


def test_two_replicas_converge() -> None:
    a = Replica.open(":memory:", identity=Identity.generate(label="a"))
    b = Replica.open(":memory:", identity=Identity.generate(label="b"))
    a.put("residents", "1", {"name": "Siti"})
    b.put("residents", "2", {"name": "Budi"})
    for bundle in a.pack(b.knowledge()):
        b.apply(bundle)
    for bundle in b.pack(a.knowledge()):
        a.apply(bundle)
    assert a.state_digest() == b.state_digest()
    assert b.get("residents", "1") == {"name": "Siti"}
