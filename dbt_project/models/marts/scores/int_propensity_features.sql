{#-
  Propensity features per profile at five cutoffs, computed only from what happened strictly
  before each cutoff. Each cutoff labels the window after it (its label_window_days):
    purchase_train  as_of - 2P, purchase_eval as_of - P   (P = var propensity_window_days, 30)
    churn_train     as_of - 2C, churn_eval    as_of - C   (C = var churn_window_days, 90)
    score           as_of, no labels yet (today's scores)
  The eval cutoff's window ends at as_of and the train cutoff's window ends at the eval cutoff,
  so evaluation is out of time. A profile appears at a cutoff when it had any event or order
  before it. Only orders that count as purchases (not cancelled/refunded) count.
-#}
{%- set as_of = headwater.as_of_timestamp() %}
{%- set p = headwater.profile_setting('propensity_window_days') | int %}
{%- set c = headwater.profile_setting('churn_window_days') | int %}
with cutoffs as (

    select 'purchase_train' as cutoff_name, 'train' as split,
        {{ headwater.add_days(as_of, -2 * p) }} as cutoff_at, {{ p }} as label_window_days
    union all
    select 'purchase_eval', 'eval', {{ headwater.add_days(as_of, -p) }}, {{ p }}
    union all
    select 'churn_train', 'train', {{ headwater.add_days(as_of, -2 * c) }}, {{ c }}
    union all
    select 'churn_eval', 'eval', {{ headwater.add_days(as_of, -c) }}, {{ c }}
    union all
    select 'score', 'score', {{ as_of }}, 0

),

orders as (

    select profile_id, ordered_at, total
    from {{ ref('int_profile_orders') }}
    where counts_as_purchase

),

order_features as (

    select
        cutoffs.cutoff_name,
        orders.profile_id,
        min(orders.ordered_at) as first_order_at,
        max(orders.ordered_at) as last_order_at,
        sum(case when orders.ordered_at >= {{ headwater.add_days('cutoffs.cutoff_at', -365) }}
            then 1 else 0 end) as orders_365d,
        sum(case when orders.ordered_at >= {{ headwater.add_days('cutoffs.cutoff_at', -365) }}
            then orders.total else 0 end) as spend_365d
    from cutoffs
    join orders on orders.ordered_at < cutoffs.cutoff_at
    group by cutoffs.cutoff_name, orders.profile_id

),

event_features as (

    select
        cutoffs.cutoff_name,
        events.profile_id,
        min(events.event_at) as first_event_at,
        max(events.event_at) as last_event_at,
        sum(case when events.event_at >= {{ headwater.add_days('cutoffs.cutoff_at', -30) }}
            then 1 else 0 end) as events_30d,
        sum(case when events.event_at >= {{ headwater.add_days('cutoffs.cutoff_at', -30) }}
            and events.event_name = 'Product Added' then 1 else 0 end) as cart_adds_30d
    from cutoffs
    join {{ ref('int_profile_events') }} as events on events.event_at < cutoffs.cutoff_at
    group by cutoffs.cutoff_name, events.profile_id

),

labels as (

    -- What each profile did in the window after each cutoff: orders and any activity.
    select
        cutoff_name,
        profile_id,
        sum(is_order) as orders_in_window,
        count(*) as activity_in_window
    from (
        select cutoffs.cutoff_name, orders.profile_id, 1 as is_order
        from cutoffs
        join orders
            on orders.ordered_at >= cutoffs.cutoff_at
            and orders.ordered_at < {{ headwater.add_days('cutoffs.cutoff_at',
                'cutoffs.label_window_days') }}
        union all
        select cutoffs.cutoff_name, events.profile_id, 0 as is_order
        from cutoffs
        join {{ ref('int_profile_events') }} as events
            on events.event_at >= cutoffs.cutoff_at
            and events.event_at < {{ headwater.add_days('cutoffs.cutoff_at',
                'cutoffs.label_window_days') }}
    ) as after_cutoff
    where cutoff_name <> 'score'
    group by cutoff_name, profile_id

),

population as (

    select cutoff_name, profile_id from order_features
    union
    select cutoff_name, profile_id from event_features

),

raw_features as (

    select
        population.cutoff_name,
        cutoffs.split,
        cutoffs.cutoff_at,
        cutoffs.label_window_days,
        population.profile_id,
        least(coalesce({{ headwater.days_between('order_features.last_order_at',
            'cutoffs.cutoff_at') }}, 730), 730) as days_since_last_order,
        case when order_features.profile_id is not null then 1 else 0 end as has_ordered,
        coalesce(order_features.orders_365d, 0) as orders_365d,
        cast(coalesce(order_features.spend_365d, 0) as double) as spend_365d,
        least({{ headwater.days_between(
            'greatest(coalesce(event_features.last_event_at, order_features.last_order_at), '
            ~ 'coalesce(order_features.last_order_at, event_features.last_event_at))',
            'cutoffs.cutoff_at') }}, 730) as days_since_last_seen,
        coalesce(event_features.events_30d, 0) as events_30d,
        coalesce(event_features.cart_adds_30d, 0) as cart_adds_30d,
        least({{ headwater.days_between(
            'least(coalesce(event_features.first_event_at, order_features.first_order_at), '
            ~ 'coalesce(order_features.first_order_at, event_features.first_event_at))',
            'cutoffs.cutoff_at') }}, 730) as tenure_days,
        case
            when population.cutoff_name = 'score' then null
            when labels.orders_in_window > 0 then 1
            else 0
        end as purchased_in_window,
        case
            when population.cutoff_name = 'score' then null
            when labels.activity_in_window > 0 then 1
            else 0
        end as active_in_window
    from population
    join cutoffs on cutoffs.cutoff_name = population.cutoff_name
    left join order_features
        on order_features.cutoff_name = population.cutoff_name
        and order_features.profile_id = population.profile_id
    left join event_features
        on event_features.cutoff_name = population.cutoff_name
        and event_features.profile_id = population.profile_id
    left join labels
        on labels.cutoff_name = population.cutoff_name and labels.profile_id = population.profile_id

)

select
    cutoff_name,
    split,
    cutoff_at,
    label_window_days,
    profile_id,
    days_since_last_order,
    orders_365d,
    spend_365d,
    days_since_last_seen,
    events_30d,
    cart_adds_30d,
    tenure_days,
    -- Model inputs: log(1 + x) tames the long tails of counts, money and durations.
    ln(1 + days_since_last_order) as log_days_since_last_order,
    has_ordered,
    ln(1 + orders_365d) as log_orders_365d,
    ln(1 + spend_365d) as log_spend_365d,
    ln(1 + days_since_last_seen) as log_days_since_last_seen,
    ln(1 + events_30d) as log_events_30d,
    ln(1 + cart_adds_30d) as log_cart_adds_30d,
    ln(1 + tenure_days) as log_tenure_days,
    purchased_in_window,
    active_in_window
from raw_features
