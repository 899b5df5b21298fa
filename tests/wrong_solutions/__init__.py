"""Plausible wrong answers to the six exercises, and right answers written in other styles.

tests/test_unittest_module.py feeds them to w1_unittest: every wrong answer must make its
test function raise an AssertionError, every right answer must pass.

Each module defines
    TESTS    the w1_unittest functions that test the exercise
    WRONG    {name: (answer, tests that must fail)}
    CORRECT  {name: answer}
"""
