"""Definitions whose verify counts are taken from real ecFlow 5.9.2's simulator (differential tests)."""

CASES = {
"today_series_late_begin": """suite s
  clock real 6.5.2024 +10:30
  task t
    today 10:00 12:00 00:30
endsuite
""",
"time_series_late_begin": """suite s
  clock real 6.5.2024 +10:30
  task t
    time 10:00 12:00 00:30
endsuite
""",
"today_single_late": """suite s
  clock real 6.5.2024 +11:00
  task t
    today 10:00
  task u
    time 10:00
endsuite
""",
"relative_series": """suite s
  clock real 6.5.2024
  task t
    time +00:30 03:00 00:30
endsuite
""",
"multi_today": """suite s
  clock real 6.5.2024
  task t
    today 10:00
    today 14:00
endsuite
""",
"time_and_today": """suite s
  clock real 6.5.2024
  task t
    time 10:00
    today 09:00
endsuite
""",
"days": """suite s
  clock real 6.5.2024
  task t
    day monday
    day wednesday
  task u
    day tuesday
    time 10:00
    time 15:00
endsuite
""",
"date_wild": """suite s
  clock real 28.4.2024
  task t
    date 1.*.*
  task u
    date *.5.2024
    time 12:00
endsuite
""",
"cron_months": """suite s
  clock real 1.1.2024
  task t
    cron -m 2,4 -d 1,15 06:00
  task u
    cron -w 0L 07:00
  task v
    cron 22:00 23:00 00:30
endsuite
""",
"repeat_day_time": """suite s
  clock real 6.5.2024
  family f
    repeat day 1
    task t
      time 10:00
  endfamily
endsuite
""",
"repeat_int_time": """suite s
  clock real 6.5.2024
  family f
    repeat integer I 1 4
    task t
      time 10:00
    task u
      trigger t == complete
  endfamily
endsuite
""",
"family_time_series": """suite s
  clock real 6.5.2024
  family f
    time 08:00 12:00 02:00
    task a
    task b
      trigger a == complete
  endfamily
endsuite
""",
"family_day_task_time": """suite s
  clock real 5.5.2024
  family f
    day monday
    day thursday
    task t
      time 09:00
      time 17:00
  endfamily
endsuite
""",
"cron_family": """suite s
  clock real 6.5.2024
  family f
    cron -w 1,2 10:00
    task a
    task b
      trigger a == complete
      time 11:00
  endfamily
endsuite
""",
"hybrid_mix": """suite s
  clock hybrid 6.5.2024
  task a
    time 10:00 14:00 02:00
  task b
    date 6.5.2024
  task c
    date 7.5.2024
  task d
    cron 10:00
  task e
    cron 10:00 12:00 01:00
endsuite
""",
"nested_repeats": """suite s
  clock real 1.1.2020
  family outer
    repeat integer O 1 3
    family inner
      repeat enumerated E a b
      task t
    endfamily
    task after
      trigger inner == complete
  endfamily
endsuite
""",
"complete_expr_repeat": """suite s
  clock real 1.1.2020
  family f
    repeat integer I 1 5
    complete f:I ge 4
    task t
  endfamily
endsuite
""",
"chain_time": """suite s
  clock real 6.5.2024
  task a
    time 10:00
  task b
    trigger a == complete
    time 10:00
  task c
    trigger b == complete
endsuite
""",
"relative_single_repeat": """suite s
  clock real 6.5.2024
  family f
    repeat integer I 1 3
    task t
      time +01:00
  endfamily
endsuite
""",
"today_relative": """suite s
  clock real 6.5.2024 +09:00
  task t
    today +00:20
endsuite
""",
"repeat_date_with_day": """suite s
  clock real 6.5.2024
  family f
    repeat date YMD 20240506 20240519
    task t
      day wednesday
    task u
  endfamily
endsuite
""",
"repeat_with_cron_child": """suite s
  clock real 6.5.2024
  family f
    repeat integer I 1 3
    family g
      task t
        cron 10:00 12:00 01:00
      task stop
    endfamily
    complete g/stop == complete
  endfamily
endsuite
""",
"defstatus_in_repeat": """suite s
  clock real 1.1.2020
  family f
    repeat integer I 1 3
    task t
    task skip
      defstatus complete
  endfamily
endsuite
""",
"limit_time_series": """suite s
  clock real 6.5.2024
  limit l 1
  inlimit l
  task a
    time 10:00 11:00 00:15
  task b
    time 10:00 11:00 00:15
endsuite
""",
"event_trigger_series": """suite s
  clock real 6.5.2024
  task a
    event e
    time 06:00 18:00 03:00
  task b
    trigger a:e
endsuite
""",
"multi_cron": """suite s
  clock real 6.5.2024
  endclock 20.5.2024
  task t
    cron -w 1 06:00
    cron -w 5 18:00
endsuite
""",
"date_past_exact": """suite s
  clock real 6.5.2024
  task t
    date 1.5.2024
  task u
    date 6.5.2024
endsuite
""",
"today_family_series": """suite s
  clock real 6.5.2024 +07:10
  family f
    today 07:00 09:00 00:30
    task t
  endfamily
endsuite
""",
"complete_with_time": """suite s
  clock real 6.5.2024
  task a
  task b
    time 10:00 12:00 01:00
    complete a == complete
  task c
    trigger b == complete
endsuite
""",
"day_and_date": """suite s
  clock real 6.5.2024
  task t
    day friday
    date 10.5.2024
  task u
    day saturday
    date 10.5.2024
endsuite
""",
"repeat_enum_time_series": """suite s
  clock real 6.5.2024
  family f
    repeat enumerated E a b
    task t
      time 08:00 10:00 01:00
  endfamily
endsuite
""",
"autocancel_suite": """suite s
  clock real 6.5.2024
  autocancel +01:00
  task t
    time 10:00
endsuite
suite k
  clock real 6.5.2024
  task t
    time 11:00
endsuite
""",
"queue_in_repeat": """suite s
  clock real 6.5.2024
  family f
    repeat integer I 1 3
    queue q a b c
    task t
    task u
      trigger t == complete
  endfamily
endsuite
""",
"late_and_labels": """suite s
  clock real 6.5.2024
  task t
    late -s +00:15 -a 20:00 -c +02:00
    label info "x"
    meter m 0 100
    time 10:00 22:00 04:00
  task u
    trigger t:m ge 100
endsuite
""",
"autocancel_days": """suite s
  clock real 6.5.2024
  family f
    autocancel 1
    task t
  endfamily
  family g
    task t
      time 10:00
  endfamily
endsuite
""",
"inlimit_n": """suite s
  clock real 6.5.2024
  limit fam 1
  family f1
    inlimit -n fam
    task a
    task b
  endfamily
  family f2
    inlimit -n fam
    task a
    task b
  endfamily
endsuite
""",
"relative_family_repeat": """suite s
  clock real 6.5.2024
  family f
    repeat integer I 1 3
    time +00:10 00:50 00:20
    task t
  endfamily
endsuite
""",
"repeat_string_trigger": """suite s
  clock real 6.5.2024
  family f
    repeat string S a b c d
    task t
  endfamily
  task after
    trigger f:S ge 2
endsuite
""",
"repeat_date_negative": """suite s
  clock real 6.5.2024
  family f
    repeat date YMD 20240510 20240501 -3
    task t
  endfamily
endsuite
""",
"suspended_defstatus": """suite s
  clock real 6.5.2024
  family f
    defstatus suspended
    task t
  endfamily
  task u
endsuite
""",
"cron_and_day_in_repeat": """suite s
  clock real 6.5.2024
  family f
    repeat date YMD 20240506 20240512
    family g
      day friday
      task t
        time 09:00
    endfamily
    task x
  endfamily
endsuite
""",
"two_suites_clocks": """suite a
  clock real 6.5.2024
  task t
    time 10:00 12:00 01:00
endsuite
suite b
  clock real 10.5.2024 +06:00
  task t
    today 05:00 09:00 02:00
    day friday
endsuite
""",
"date_in_repeat": """suite s
  clock real 6.5.2024
  family f
    repeat integer I 1 3
    task t
      date 8.5.2024
  endfamily
endsuite
""",
"time_series_midnight_cross": """suite s
  clock real 6.5.2024
  task t
    time 22:00 23:59 00:30
endsuite
""",
"today_multi_series": """suite s
  clock real 6.5.2024 +08:15
  task t
    today 08:00 09:00 00:30
    today 12:00
endsuite
""",
"complete_event": """suite s
  clock real 6.5.2024
  task a
    event done
  task b
    complete a:done
    trigger 0 == 1
  task c
    trigger b == complete
endsuite
""",
"endclock_first_suite": """suite a
  clock real 6.5.2024
  endclock 8.5.2024
  task t
    cron 10:00
endsuite
suite b
  clock real 6.5.2024
  task t
    cron 11:00
endsuite
""",
"suite_order_period": """suite a
  clock real 6.5.2024
  task t
    day friday
endsuite
suite b
  clock real 6.5.2024
  task u
    time 10:00
  family f
    repeat day 1
    task v
      time 12:00
    task w
      trigger v == complete
  endfamily
  task x
    cron -w 2 09:00
endsuite
""",
"period_carries_over": """suite a
  clock real 6.5.2024
  task t
    cron 10:00
endsuite
suite b
  clock real 6.5.2024
  task u
    cron 11:00
endsuite
""",
"complete_true_repeat": """suite s
  clock real 6.5.2024
  family g
    repeat integer I 1 5
    complete 1 == 1
    task t
  endfamily
  family h
    repeat date YMD 20240101 20240103
    complete h/t2 == complete
    task t1
      time 10:00
    task t2
  endfamily
endsuite
""",
"repeat_day_complete": """suite s
  clock real 6.5.2024
  family f
    repeat day 1
    complete 1 == 1
    task t
  endfamily
endsuite
""",
}
