from tunewise.report.decide import _p


def test_p_values_below_resolution_are_not_printed_as_zero():
    assert _p(0.0) == "p<0.001"
    assert _p(3.6e-5) == "p<0.001"
    assert _p(0.29) == "p=0.29"
    assert _p(0.0012) == "p=0.0012"
