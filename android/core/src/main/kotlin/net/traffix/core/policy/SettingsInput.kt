package net.traffix.core.policy

import java.math.BigDecimal
import java.math.RoundingMode

/*
 * The owner's settings form, judged: the text as typed → [ResourceSettings], or typed problems
 * the app shows through string resources (core `UiText`), never English from here.
 */

/** Units for the owner's data caps: decimal, as Android's own data-usage screens count. */
enum class SizeUnit(val bytes: Long) {
    MB(1_000_000L),
    GB(1_000_000_000L),
}

/** The settings a problem is about (each has its label among the app's strings). */
enum class SettingsField { BATTERY_FLOOR, DAILY_CAP, MONTHLY_CAP, MONTH_START_DAY, MAX_STREAMS }

/**
 * One thing wrong with the owner's settings. [input] is the text as typed (for NOT_A_NUMBER,
 * NOT_WHOLE, TOO_LARGE); [min] and [max] are the allowed range (OUT_OF_RANGE). Data, not prose:
 * the app words it in the owner's language.
 */
data class SettingsProblem(
    val field: SettingsField,
    val kind: Kind,
    val input: String = "",
    val min: Long? = null,
    val max: Long? = null,
) {
    enum class Kind { NOT_A_NUMBER, NOT_WHOLE, TOO_LARGE, NEGATIVE, OUT_OF_RANGE }

    /** English, for logs and exceptions only. */
    override fun toString(): String =
        "${field.name.lowercase()}: ${kind.name.lowercase()}" +
            (if (input.isNotEmpty()) " \"$input\"" else "") + (if (min != null) " ($min..$max)" else "")
}

/** The settings form as the owner typed it: caps and numbers as text, judged by [SettingsInput.check]. */
data class SettingsForm(
    val wifiOnly: Boolean,
    val chargingOnly: Boolean,
    val batteryFloorPct: Int?,
    val dailyCap: String,
    val dailyUnit: SizeUnit,
    val monthlyCap: String,
    val monthlyUnit: SizeUnit,
    val monthStartDay: String,
    val maxStreams: String,
    val schedule: Schedule,
    val paused: Boolean = false,
)

sealed class SettingsCheck {
    data class Ok(val settings: ResourceSettings) : SettingsCheck()

    /** Every problem found, in the form's order. */
    data class Invalid(val problems: List<SettingsProblem>) : SettingsCheck()
}

object SettingsInput {
    /** The form → settings, or every problem with it. */
    fun check(form: SettingsForm): SettingsCheck {
        val problems = ArrayList<SettingsProblem>()
        val daily = cap(form.dailyCap, form.dailyUnit, SettingsField.DAILY_CAP, problems)
        val monthly = cap(form.monthlyCap, form.monthlyUnit, SettingsField.MONTHLY_CAP, problems)
        val day = whole(form.monthStartDay, SettingsField.MONTH_START_DAY, problems)
        val streams = whole(form.maxStreams, SettingsField.MAX_STREAMS, problems)
        // Range checks only for what parsed: one problem per field.
        val parsed = problems.map { it.field }.toSet()
        problems +=
            ResourceSettings.problems(form.batteryFloorPct, daily, monthly, day ?: 1, streams ?: 0)
                .filter { it.field !in parsed }
        if (problems.isNotEmpty()) return SettingsCheck.Invalid(problems.sortedBy { it.field.ordinal })
        return SettingsCheck.Ok(
            ResourceSettings(
                wifiOnly = form.wifiOnly,
                chargingOnly = form.chargingOnly,
                batteryFloorPct = form.batteryFloorPct,
                dailyCapBytes = daily,
                monthlyCapBytes = monthly,
                monthStartDay = day ?: 1,
                schedule = form.schedule,
                maxStreams = streams ?: 0,
                paused = form.paused,
            ),
        )
    }

    /** The owner's cap text in [unit] → bytes; blank → null (no cap). A decimal comma is accepted. */
    fun parseCap(text: String, unit: SizeUnit, field: SettingsField): CapParse {
        val typed = text.trim()
        val t = typed.replace(',', '.')
        if (t.isEmpty()) return CapParse.Ok(null)
        val value =
            try {
                BigDecimal(t)
            } catch (e: NumberFormatException) {
                return CapParse.Bad(SettingsProblem(field, SettingsProblem.Kind.NOT_A_NUMBER, typed))
            }
        return try {
            CapParse.Ok(value.multiply(BigDecimal.valueOf(unit.bytes)).setScale(0, RoundingMode.HALF_UP).longValueExact())
        } catch (e: ArithmeticException) {
            CapParse.Bad(SettingsProblem(field, SettingsProblem.Kind.TOO_LARGE, typed))
        }
    }

    sealed class CapParse {
        data class Ok(val bytes: Long?) : CapParse()

        data class Bad(val problem: SettingsProblem) : CapParse()
    }

    private fun cap(text: String, unit: SizeUnit, field: SettingsField, problems: MutableList<SettingsProblem>): Long? =
        when (val r = parseCap(text, unit, field)) {
            is CapParse.Ok -> r.bytes
            is CapParse.Bad -> {
                problems += r.problem
                null
            }
        }

    private fun whole(text: String, field: SettingsField, problems: MutableList<SettingsProblem>): Int? {
        val t = text.trim()
        t.toIntOrNull()?.let { return it }
        val kind =
            when {
                t.isNotEmpty() && t.trimStart('-', '+').let { d -> d.isNotEmpty() && d.all { it in '0'..'9' } } ->
                    SettingsProblem.Kind.TOO_LARGE
                else -> SettingsProblem.Kind.NOT_WHOLE
            }
        problems += SettingsProblem(field, kind, t)
        return null
    }
}
