"""Brokers in words: reachability tracked across metadata fetches, client errors grouped by
broker (workers.engine.brokerhealth), and the connection attempt that learns a broker is gone."""

from __future__ import annotations

import socket

from workers.clients.kafka import connect_error
from workers.engine.brokerhealth import broker_state, group_errors, in_words, track

SEEN = {"1": "127.0.0.1:9092", "2": "127.0.0.1:9093", "3": "127.0.0.1:9094"}


def test_it_keeps_when_a_broker_became_unreachable_until_it_answers_again():
    up = track({}, SEEN, dict.fromkeys(SEEN), now=100.0)
    assert [b["reachable"] for b in up.values()] == [True, True, True]
    down = track(up, SEEN, {"1": None, "2": "Connection refused", "3": None}, now=105.0)
    assert down["2"] == {
        "host": "127.0.0.1:9093",
        "reachable": False,
        "since": 105.0,
        "error": "Connection refused",
        "in_metadata": True,
    }
    # Fenced by the controller, it leaves the metadata: still listed, still since 105.
    gone = {k: v for k, v in SEEN.items() if k != "2"}
    later = track(down, gone, {"1": None, "2": "Connection refused", "3": None}, now=115.0)
    assert later["2"]["since"] == 105.0 and later["2"]["in_metadata"] is False
    assert broker_state("2", later["2"]) == (
        "broker 2 (127.0.0.1:9093) unreachable since 00:01:45 UTC: Connection refused"
    )
    back = track(later, SEEN, dict.fromkeys(SEEN), now=130.0)
    assert back["2"]["reachable"] and back["2"]["since"] is None
    assert broker_state("2", back["2"]) == "broker 2 (127.0.0.1:9093) up"


def test_it_groups_client_errors_by_broker_in_words():
    brokers = track({}, SEEN, {"1": None, "2": "Connection refused", "3": None}, now=1.0)
    grouped = group_errors(
        [
            "consumer: _TRANSPORT: 127.0.0.1:9093/2: Connect to ipv4#127.0.0.1:9093 failed: "
            "Connection refused (after 0ms in state CONNECT)",
            "producer: _TRANSPORT: 127.0.0.1:9093/bootstrap: Disconnected",
            "producer: _ALL_BROKERS_DOWN: 3/3 brokers are down",
            "producer: _ALL_BROKERS_DOWN: 3/3 brokers are down",
        ],
        brokers,
    )
    assert grouped["brokers"] == {
        "2": [
            "consumer: connection failed: 127.0.0.1:9093/2: Connect to ipv4#127.0.0.1:9093 "
            "failed: Connection refused (after 0ms in state CONNECT)",
            "producer: connection failed: 127.0.0.1:9093/bootstrap: Disconnected",
        ]
    }
    assert grouped["other"] == ["producer: all brokers down: 3/3 brokers are down"]
    assert in_words("checker: _SOMETHING_NEW: x") == "checker: something_new: x"


def test_it_learns_at_once_that_nothing_listens_on_a_brokers_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert connect_error(address, 1.0) is None
    assert connect_error(address, 1.0) == "Connection refused"
    assert connect_error("no-port", 1.0)


def test_it_says_the_clusters_state_in_words_when_something_is_wrong():
    from workers.engine.brokerhealth import cluster_summary

    up = track({}, SEEN, dict.fromkeys(SEEN), now=100.0)
    assert cluster_summary(up) is None
    one = track(up, SEEN, {"1": "Connection refused", "2": None, "3": None}, now=36184.0)
    assert cluster_summary(one) == "broker 1 unreachable since 10:03:04 UTC"
    two = track(one, SEEN, {"1": "refused", "2": None, "3": "refused"}, now=36200.0)
    assert cluster_summary(two) == (
        "broker 1 unreachable since 10:03:04 UTC; broker 3 unreachable since 10:03:20 UTC"
    )
    # The whole cluster: since the last broker went, whoever went first.
    every = dict.fromkeys(SEEN, "Connection refused")
    all_down = track(two, SEEN, every, now=36507.0)
    assert cluster_summary(all_down) == "all 3 brokers unreachable since 10:08:27 UTC"
