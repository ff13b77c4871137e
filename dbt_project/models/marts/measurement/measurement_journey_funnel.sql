{#-
  Each journey's steps in order, as a funnel: how many instances entered, and per step how many
  reached it (any decision about the step), were sent, held out (holdout group), skipped (a
  condition failed, e.g. the cart was bought), capped (frequency cap) or failed (the vendor
  refused); with the conversions and revenue attributed to the step (last touch).
  step_position: steps ordered by their mean due time after the instance's entry.
-#}
with events as (

    select * from {{ ref('stg_activity_journey_events') }}
    where occurred_at <= {{ headwater.as_of_timestamp() }}

),

entered as (

    select
        journey,
        count(distinct instance_id) as instances_entered,
        count(distinct case when holdout then instance_id end) as holdout_instances_entered,
        min(occurred_at) as entered_at_first
    from events
    where event in ('entered', 'restarted')
    group by journey

),

instance_start as (

    select instance_id, min(occurred_at) as started_at
    from events
    where event in ('entered', 'restarted')
    group by instance_id

),

steps as (

    select
        e.journey,
        e.step,
        count(distinct e.instance_id) as instances_reached,
        count(distinct case when e.event = 'step_sent' then e.instance_id end) as sent,
        count(distinct case when e.event = 'step_held_out' then e.instance_id end) as held_out,
        count(distinct case when e.event = 'step_skipped' then e.instance_id end) as skipped,
        count(distinct case when e.event = 'step_capped' then e.instance_id end) as capped,
        count(distinct case when e.event = 'step_failed' then e.instance_id end) as failed,
        avg({{ headwater.days_between('i.started_at', 'coalesce(e.due_at, e.occurred_at)') }})
            as mean_days_after_entry
    from events as e
    left join instance_start as i on i.instance_id = e.instance_id
    where e.step is not null
    group by e.journey, e.step

),

earned as (

    select
        journey,
        step,
        sum(case when is_conversion then 1 else 0 end) as conversions,
        sum(revenue) as revenue
    from {{ ref('attribution_orders') }}
    where is_attributed and source = 'journey'
    group by journey, step

)

select
    s.journey,
    s.step,
    cast(row_number() over (
        partition by s.journey order by s.mean_days_after_entry nulls last, s.step
    ) as integer) as step_position,
    coalesce(n.instances_entered, 0) as instances_entered,
    coalesce(n.holdout_instances_entered, 0) as holdout_instances_entered,
    s.instances_reached,
    s.sent,
    s.held_out,
    s.skipped,
    s.capped,
    s.failed,
    s.mean_days_after_entry * 24 as mean_hours_after_entry,
    coalesce(r.conversions, 0) as conversions,
    cast(coalesce(r.revenue, 0) as double) as revenue
from steps as s
left join entered as n on n.journey = s.journey
left join earned as r on r.journey = s.journey and r.step = s.step
