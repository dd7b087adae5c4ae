package net.traffix.node.ui

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.ExperimentalLayoutApi
import androidx.compose.foundation.layout.FlowRow
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.width
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.material3.AlertDialog
import androidx.compose.material3.Button
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Slider
import androidx.compose.material3.Switch
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.listSaver
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalConfiguration
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import java.time.DayOfWeek
import java.time.LocalTime
import java.time.format.TextStyle
import kotlin.math.roundToInt
import net.traffix.core.policy.ResourcePolicy
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.policy.Schedule
import net.traffix.core.policy.SettingsCheck
import net.traffix.core.policy.SettingsForm
import net.traffix.core.policy.SettingsInput
import net.traffix.core.policy.SizeUnit
import net.traffix.node.Formats
import net.traffix.node.R
import net.traffix.node.SettingsStore
import net.traffix.node.Texts

/**
 * Every resource control of the core's ResourcePolicy, edited as a form and saved together:
 * the core judges the form (SettingsInput.check) and its typed problems are shown in the owner's
 * words (Texts.settingsProblem). A saved change reaches the running agent at once. "Start on boot" saves on tap.
 */
@Composable
internal fun SettingsScreen(store: SettingsStore) {
    val context = LocalContext.current
    val saved by store.settings.collectAsStateWithLifecycle()
    val startOnBoot by store.startOnBoot.collectAsStateWithLifecycle()
    var form by rememberSaveable(saved, stateSaver = Form.Saver) { mutableStateOf(Form.of(saved)) }
    var error by rememberSaveable { mutableStateOf<String?>(null) }
    var addingWindow by rememberSaveable { mutableStateOf(false) }

    ScreenColumn {
        Section(stringResource(R.string.set_when)) {
            SwitchRow(stringResource(R.string.set_wifi_only), stringResource(R.string.set_wifi_only_help), form.wifiOnly) {
                form = form.copy(wifiOnly = it)
            }
            SwitchRow(stringResource(R.string.set_charging_only), stringResource(R.string.set_charging_only_help), form.chargingOnly) {
                form = form.copy(chargingOnly = it)
            }
            SwitchRow(
                stringResource(R.string.set_battery_floor),
                stringResource(R.string.set_battery_floor_help, form.floorPct, ResourcePolicy.BATTERY_HYSTERESIS_PCT),
                form.floorOn,
            ) { form = form.copy(floorOn = it) }
            Slider(
                value = form.floorPct.toFloat(),
                onValueChange = { form = form.copy(floorPct = it.roundToInt()) },
                valueRange = 0f..100f,
                steps = 19, // 5 % steps
                enabled = form.floorOn,
            )
        }

        Section(stringResource(R.string.set_data)) {
            CapRow(stringResource(R.string.set_daily_cap), form.daily, form.dailyUnit, { form = form.copy(daily = it) }) {
                form = form.copy(dailyUnit = it)
            }
            CapRow(stringResource(R.string.set_monthly_cap), form.monthly, form.monthlyUnit, { form = form.copy(monthly = it) }) {
                form = form.copy(monthlyUnit = it)
            }
            NumberField(stringResource(R.string.set_month_start), stringResource(R.string.set_month_start_help), form.monthStartDay) {
                form = form.copy(monthStartDay = it)
            }
            Text(stringResource(R.string.set_caps_help), style = MaterialTheme.typography.bodySmall)
        }

        Section(stringResource(R.string.set_schedule)) {
            Text(
                stringResource(if (form.windows.isEmpty()) R.string.set_schedule_always else R.string.set_schedule_windows),
                style = MaterialTheme.typography.bodySmall,
            )
            val locale = LocalConfiguration.current.locales[0]
            val everyDay = stringResource(R.string.set_every_day)
            val nextDay = stringResource(R.string.set_next_day)
            form.windows.forEachIndexed { i, w ->
                Row(Modifier.fillMaxWidth(), verticalAlignment = Alignment.CenterVertically) {
                    val overnight = !w.end.isAfter(w.start)
                    Text(
                        "${Formats.days(w.days, locale, everyDay)}  ${Formats.time(w.start)}–${Formats.time(w.end)}" +
                            if (overnight) " $nextDay" else "",
                        modifier = Modifier.weight(1f),
                    )
                    TextButton(onClick = { form = form.copy(windows = form.windows.filterIndexed { j, _ -> j != i }) }) {
                        Text(stringResource(R.string.action_remove))
                    }
                }
            }
            OutlinedButton(onClick = { addingWindow = true }) { Text(stringResource(R.string.set_add_window)) }
        }

        Section(stringResource(R.string.set_streams)) {
            NumberField(stringResource(R.string.set_max_streams), stringResource(R.string.set_max_streams_help), form.maxStreams) {
                form = form.copy(maxStreams = it)
            }
        }

        error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(onClick = {
                // The owner's pause is not on this form (notification, tile, Home): keep it.
                error =
                    when (val r = SettingsInput.check(form.toInput(store.settings.value.paused))) {
                        is SettingsCheck.Ok -> {
                            store.saveSettings(r.settings)
                            null
                        }
                        is SettingsCheck.Invalid -> r.problems.joinToString("\n") { Texts.settingsProblem(context, it) }
                    }
            }) { Text(stringResource(R.string.action_save)) }
            OutlinedButton(
                onClick = {
                    form = Form.of(saved)
                    error = null
                },
                enabled = form != Form.of(saved),
            ) { Text(stringResource(R.string.action_revert)) }
        }

        Section(stringResource(R.string.set_app)) {
            SwitchRow(stringResource(R.string.set_start_on_boot), stringResource(R.string.set_start_on_boot_help), startOnBoot) {
                store.setStartOnBoot(it)
            }
        }
    }

    if (addingWindow) {
        WindowDialog(
            onDismiss = { addingWindow = false },
            onAdd = {
                form = form.copy(windows = form.windows + it)
                addingWindow = false
            },
        )
    }
}

/** The form's state: text as typed, so a half-typed number is kept and judged only on save. */
private data class Form(
    val wifiOnly: Boolean,
    val chargingOnly: Boolean,
    val floorOn: Boolean,
    val floorPct: Int,
    val daily: String,
    val dailyUnit: SizeUnit,
    val monthly: String,
    val monthlyUnit: SizeUnit,
    val monthStartDay: String,
    val maxStreams: String,
    val windows: List<Schedule.Window>,
) {
    /** The form as the core judges it (SettingsInput.check). */
    fun toInput(paused: Boolean): SettingsForm =
        SettingsForm(
            wifiOnly = wifiOnly,
            chargingOnly = chargingOnly,
            batteryFloorPct = if (floorOn) floorPct else null,
            dailyCap = daily,
            dailyUnit = dailyUnit,
            monthlyCap = monthly,
            monthlyUnit = monthlyUnit,
            monthStartDay = monthStartDay,
            maxStreams = maxStreams,
            schedule = Schedule(windows),
            paused = paused,
        )

    companion object {
        fun of(s: ResourceSettings): Form {
            val (daily, dailyUnit) = Formats.capText(s.dailyCapBytes)
            val (monthly, monthlyUnit) = Formats.capText(s.monthlyCapBytes)
            return Form(
                wifiOnly = s.wifiOnly,
                chargingOnly = s.chargingOnly,
                floorOn = s.batteryFloorPct != null,
                floorPct = s.batteryFloorPct ?: DEFAULT_FLOOR,
                daily = daily,
                dailyUnit = dailyUnit,
                monthly = monthly,
                monthlyUnit = monthlyUnit,
                monthStartDay = s.monthStartDay.toString(),
                maxStreams = s.maxStreams.toString(),
                windows = s.schedule.windows,
            )
        }

        private val DEFAULT_FLOOR = ResourceSettings().batteryFloorPct ?: 30

        /** Survives rotation and process death: plain values, the schedule in its stored form. */
        val Saver =
            listSaver<Form, Any>(
                save = {
                    listOf(
                        it.wifiOnly, it.chargingOnly, it.floorOn, it.floorPct,
                        it.daily, it.dailyUnit.name, it.monthly, it.monthlyUnit.name,
                        it.monthStartDay, it.maxStreams, Formats.encodeSchedule(Schedule(it.windows)),
                    )
                },
                restore = {
                    Form(
                        wifiOnly = it[0] as Boolean,
                        chargingOnly = it[1] as Boolean,
                        floorOn = it[2] as Boolean,
                        floorPct = it[3] as Int,
                        daily = it[4] as String,
                        dailyUnit = SizeUnit.valueOf(it[5] as String),
                        monthly = it[6] as String,
                        monthlyUnit = SizeUnit.valueOf(it[7] as String),
                        monthStartDay = it[8] as String,
                        maxStreams = it[9] as String,
                        windows = Formats.decodeSchedule(it[10] as String).windows,
                    )
                },
            )
    }
}

@Composable
private fun SwitchRow(title: String, help: String, checked: Boolean, onChange: (Boolean) -> Unit) {
    Row(Modifier.fillMaxWidth(), verticalAlignment = Alignment.CenterVertically) {
        Column(Modifier.weight(1f)) {
            Text(title, style = MaterialTheme.typography.bodyLarge)
            Text(help, style = MaterialTheme.typography.bodySmall)
        }
        Switch(checked = checked, onCheckedChange = onChange)
    }
}

@Composable
private fun NumberField(label: String, help: String, value: String, onChange: (String) -> Unit) {
    OutlinedTextField(
        value = value,
        onValueChange = onChange,
        label = { Text(label) },
        supportingText = { Text(help) },
        singleLine = true,
        keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Number),
        modifier = Modifier.fillMaxWidth(),
    )
}

/** A data cap: a number (blank: no cap) and its unit. */
@OptIn(ExperimentalMaterial3Api::class)
@Composable
private fun CapRow(label: String, value: String, unit: SizeUnit, onValue: (String) -> Unit, onUnit: (SizeUnit) -> Unit) {
    Row(verticalAlignment = Alignment.CenterVertically, horizontalArrangement = Arrangement.spacedBy(8.dp)) {
        OutlinedTextField(
            value = value,
            onValueChange = onValue,
            label = { Text(label) },
            placeholder = { Text(stringResource(R.string.set_no_cap)) },
            singleLine = true,
            keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Decimal),
            modifier = Modifier.weight(1f),
        )
        for (u in SizeUnit.entries) {
            FilterChip(
                selected = u == unit,
                onClick = { onUnit(u) },
                label = { Text(stringResource(if (u == SizeUnit.MB) R.string.unit_mb else R.string.unit_gb)) },
            )
        }
    }
}

/** A new schedule window: days, and start and end as HH:MM (an end at or before the start is the next day). */
@OptIn(ExperimentalLayoutApi::class, ExperimentalMaterial3Api::class)
@Composable
private fun WindowDialog(onDismiss: () -> Unit, onAdd: (Schedule.Window) -> Unit) {
    // Bit i set: DayOfWeek.values()[i] (Monday = bit 0). Monday to Friday to begin with.
    var days by rememberSaveable { mutableIntStateOf(0b0011111) }
    var start by rememberSaveable { mutableStateOf("22:00") }
    var end by rememberSaveable { mutableStateOf("07:00") }
    val locale = LocalConfiguration.current.locales[0]
    val startTime: LocalTime? = Formats.parseTime(start)
    val endTime: LocalTime? = Formats.parseTime(end)
    AlertDialog(
        onDismissRequest = onDismiss,
        title = { Text(stringResource(R.string.set_add_window)) },
        text = {
            Column(verticalArrangement = Arrangement.spacedBy(8.dp)) {
                FlowRow(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                    for (d in DayOfWeek.values()) {
                        val bit = 1 shl d.ordinal
                        FilterChip(
                            selected = days and bit != 0,
                            onClick = { days = days xor bit },
                            label = { Text(d.getDisplayName(TextStyle.SHORT, locale)) },
                        )
                    }
                }
                Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                    OutlinedTextField(
                        value = start,
                        onValueChange = { start = it },
                        label = { Text(stringResource(R.string.set_from)) },
                        isError = startTime == null,
                        singleLine = true,
                        modifier = Modifier.width(120.dp),
                    )
                    OutlinedTextField(
                        value = end,
                        onValueChange = { end = it },
                        label = { Text(stringResource(R.string.set_until)) },
                        isError = endTime == null,
                        singleLine = true,
                        modifier = Modifier.width(120.dp),
                    )
                }
                Text(stringResource(R.string.set_window_help), style = MaterialTheme.typography.bodySmall)
            }
        },
        confirmButton = {
            TextButton(
                onClick = {
                    if (startTime != null && endTime != null) {
                        onAdd(Schedule.Window(DayOfWeek.values().filter { days and (1 shl it.ordinal) != 0 }.toSet(), startTime, endTime))
                    }
                },
                enabled = days != 0 && startTime != null && endTime != null,
            ) { Text(stringResource(R.string.action_add)) }
        },
        dismissButton = { TextButton(onClick = onDismiss) { Text(stringResource(R.string.action_cancel)) } },
    )
}
