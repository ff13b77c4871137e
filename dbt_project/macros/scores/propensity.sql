{#-
  Propensity models: logistic regression fit in SQL by Newton's method (IRLS), unrolled into a
  fixed number of iterations so that the same SQL runs on DuckDB and Snowflake (Snowflake's
  recursive CTEs allow no aggregates). Features are standardized with the training split's mean
  and population standard deviation, and an L2 penalty `propensity_l2` (= 1/C of scikit-learn's
  LogisticRegression, intercept not penalized) keeps the Hessian invertible.
-#}

{#- Model inputs, in the order of their parameter index (0 is the intercept). -#}
{% macro propensity_features() -%}
  {{ return([
      'log_days_since_last_order',
      'has_ordered',
      'log_orders_365d',
      'log_spend_365d',
      'log_days_since_last_seen',
      'log_events_30d',
      'log_cart_adds_30d',
      'log_tenure_days',
  ]) }}
{%- endmacro %}


{#-
  The fitted parameters of one logistic regression per `score_name`, from the rows of `relation`
  with split = 'train' (columns score_name, split, label, and every feature). One row per
  score_name and parameter: feature_index 0 is the intercept.

  Each iteration: p = sigmoid(X b); gradient g = X'(y - p) - l2 * b; Hessian H = X' W X + l2 * I
  with W = p (1 - p); solve H d = g by Gauss-Jordan elimination on the augmented matrix in row
  form (one window pass per pivot; H is positive definite so no pivoting is needed); b += d.
  Every CTE is read exactly once by the next, so no engine has to inline a chain many times.
-#}
{% macro fit_logistic_newton(relation, features, iterations, l2) -%}
{%- set k = features | length -%}
{%- set rhs = k + 1 -%}
{%- set carry = k + 2 -%}
with train as (

    select * from {{ relation }} where split = 'train'

),

stats as (

    select
        score_name,
        count(*) as training_rows,
        sum(label) as training_positives
        {%- for f in features %},
        avg(cast({{ f }} as double)) as mean_{{ loop.index }},
        stddev_pop(cast({{ f }} as double)) as sd_{{ loop.index }}
        {%- endfor %}
    from train
    group by score_name

),

x as (

    select
        train.score_name,
        cast(train.label as double) as y
        {%- for f in features %},
        (cast(train.{{ f }} as double) - stats.mean_{{ loop.index }})
            / coalesce(nullif(stats.sd_{{ loop.index }}, 0), 1) as x{{ loop.index }}
        {%- endfor %}
    from train
    join stats on stats.score_name = train.score_name

),

idx as (

    {%- for i in range(k + 1) %}
    {%- for j in range(carry + 1) %}
    select {{ i }} as i, {{ j }} as j{{ " union all" if not loop.last }}
    {%- endfor %}{{ " union all" if not loop.last }}
    {%- endfor %}

),

b_0 as (

    select score_name{% for i in range(k + 1) %}, cast(0 as double) as c{{ i }}{% endfor %}
    from stats

),

{%- for it in range(1, iterations + 1) %}

scored_{{ it }} as (

    select
        x.*
        {%- for i in range(k + 1) %}, b.c{{ i }}{% endfor %},
        1.0 / (1.0 + exp(-least(greatest(
            b.c0{% for i in range(1, k + 1) %} + b.c{{ i }} * x.x{{ i }}{% endfor %},
            -30.0), 30.0))) as p
    from x
    join b_{{ it - 1 }} as b on b.score_name = x.score_name

),

agg_{{ it }} as (

    select
        score_name
        {%- for i in range(k + 1) %},
        max(c{{ i }}) as c{{ i }},
        sum((y - p){% if i > 0 %} * x{{ i }}{% endif %}) as g{{ i }}
        {%- endfor %}
        {%- for i in range(k + 1) %}{% for j in range(i, k + 1) %},
        sum(p * (1 - p){% if i > 0 %} * x{{ i }}{% endif %}{% if j > 0 %} * x{{ j }}{% endif %})
            as h{{ i }}_{{ j }}
        {%- endfor %}{% endfor %}
    from scored_{{ it }}
    group by score_name

),

m_{{ it }}_0 as (

    select
        agg.score_name,
        idx.i,
        idx.j,
        case
            {%- for i in range(k + 1) %}
            {%- for j in range(k + 1) %}
            when idx.i = {{ i }} and idx.j = {{ j }} then agg.h{{ [i, j] | min }}_{{ [i, j] | max }}
                {%- if i == j and i > 0 %} + {{ l2 }}{% endif %}
            {%- endfor %}
            when idx.i = {{ i }} and idx.j = {{ rhs }} then agg.g{{ i }}
                {%- if i > 0 %} - {{ l2 }} * agg.c{{ i }}{% endif %}
            when idx.i = {{ i }} and idx.j = {{ carry }} then agg.c{{ i }}
            {%- endfor %}
        end as v
    from agg_{{ it }} as agg
    cross join idx

),

{%- for r in range(k + 1) %}

m_{{ it }}_{{ r + 1 }} as (

    select
        score_name,
        i,
        j,
        case
            when j = {{ carry }} then v
            when i = {{ r }} then v / piv
            else v - fac * prow / piv
        end as v
    from (
        select
            m.*,
            max(case when i = {{ r }} and j = {{ r }} then v end)
                over (partition by score_name) as piv,
            max(case when i = {{ r }} then v end) over (partition by score_name, j) as prow,
            max(case when j = {{ r }} then v end) over (partition by score_name, i) as fac
        from m_{{ it }}_{{ r }} as m
    ) as pivoting

),

{%- endfor %}

b_{{ it }} as (

    select
        score_name
        {%- for i in range(k + 1) %},
        sum(case when i = {{ i }} and j in ({{ rhs }}, {{ carry }}) then v end) as c{{ i }}
        {%- endfor %},
        max(case when j = {{ rhs }} then abs(v) end) as last_step
    from m_{{ it }}_{{ k + 1 }}
    group by score_name

){{ "," if not loop.last }}
{%- endfor %}

{%- set final = 'b_' ~ iterations %}
{%- set names = ['(intercept)'] + features %}
{%- for name in names %}
{%- set i = loop.index0 %}
select
    stats.score_name,
    {{ i }} as feature_index,
    '{{ name }}' as feature_name,
    {% if i == 0 %}cast(null as double){% else %}stats.mean_{{ i }}{% endif %} as feature_mean,
    {% if i == 0 %}cast(null as double){% else %}coalesce(nullif(stats.sd_{{ i }}, 0), 1){% endif %}
        as feature_stddev,
    final.c{{ i }} as coefficient,
    stats.training_rows,
    stats.training_positives,
    {{ iterations }} as newton_iterations,
    final.last_step as last_newton_step,
    cast({{ l2 }} as double) as l2_penalty
from stats
join {{ final }} as final on final.score_name = stats.score_name
{{ "union all" if not loop.last }}
{%- endfor %}
{%- endmacro %}


{#-
  Parameters of every score as one row per score_name (`c_<feature>`, `mean_<feature>`,
  `sd_<feature>`), to join beside a feature row and score it with propensity_probability().
-#}
{% macro propensity_parameters_wide(features) -%}
select
    score_name,
    max(case when feature_index = 0 then coefficient end) as c_intercept
    {%- for f in features %},
    max(case when feature_name = '{{ f }}' then coefficient end) as c_{{ f }},
    max(case when feature_name = '{{ f }}' then feature_mean end) as mean_{{ f }},
    max(case when feature_name = '{{ f }}' then feature_stddev end) as sd_{{ f }}
    {%- endfor %}
from {{ ref('propensity_parameters') }}
group by score_name
{%- endmacro %}


{#- The fitted probability for a row `row_alias` of features and `params_alias` (wide). -#}
{% macro propensity_probability(features, row_alias, params_alias) -%}
  1.0 / (1.0 + exp(-least(greatest(
      {{ params_alias }}.c_intercept
      {%- for f in features %}
      + {{ params_alias }}.c_{{ f }}
          * (cast({{ row_alias }}.{{ f }} as double) - {{ params_alias }}.mean_{{ f }})
          / {{ params_alias }}.sd_{{ f }}
      {%- endfor %}, -30.0), 30.0)))
{%- endmacro %}
