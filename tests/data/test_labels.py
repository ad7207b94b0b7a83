import pandas as pd

from ecgproto.data.labels import BENCHMARK_SETS, all_labels, benchmark_label_set, group_labels, label_table


def test_71_labels_in_scp_order(ptbxl_sample):
    scp = pd.read_csv(ptbxl_sample / "scp_statements.csv", index_col=0)
    assert all_labels() == tuple(scp.index)


def test_groups_partition_labels():
    sizes = {g: len(group_labels(g)) for g in ("rhythm", "morphology", "global")}
    assert sizes == {"rhythm": 16, "morphology": 52, "global": 3}
    joined = set().union(*(group_labels(g) for g in sizes))
    assert joined == set(all_labels())
    assert group_labels("global") == ("DIG", "NORM", "EL")
    assert group_labels("rhythm")[:5] == ("1AVB", "IVCD", "3AVB", "2AVB", "SR")


def test_group_indices_point_at_codes():
    table = label_table()
    for g in ("rhythm", "morphology", "global"):
        assert [table.codes[i] for i in table.indices(g)] == list(group_labels(g))


def test_benchmark_sets_match_ptbxl_paper():
    sizes = {n: len(benchmark_label_set(n)) for n in BENCHMARK_SETS}
    assert sizes == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
    assert benchmark_label_set("superdiagnostic") == ("CD", "HYP", "MI", "NORM", "STTC")
