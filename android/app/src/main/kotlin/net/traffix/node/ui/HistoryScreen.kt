package net.traffix.node.ui

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.material3.AlertDialog
import androidx.compose.material3.ButtonDefaults
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalConfiguration
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import java.time.format.DateTimeFormatter
import java.time.format.FormatStyle
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import net.traffix.core.agent.HistoryPeriod
import net.traffix.core.agent.StatsResult
import net.traffix.core.agent.UnpairResult
import net.traffix.node.ControlOnce
import net.traffix.node.NodeStatus
import net.traffix.node.R
import net.traffix.node.SettingsStore
import net.traffix.node.Texts

/** Days of history the screen asks for (the protocol allows up to 62). */
private const val HISTORY_DAYS = 31

/** Months of history the screen asks for (the protocol allows up to 24). */
private const val HISTORY_MONTHS = 12

/**
 * The owner's earnings and traffic history per day and per month as the server counts them,
 * and "Unpair this phone" with a confirmation — both asked with the device key (the app has no
 * login; docs/protocol.md "Control requests"): over the live tunnel while the node serves, on
 * one short control-only session while it is paused or reconnecting (core Agent decides), or
 * while it is stopped (ControlOnce: an agent built for the one request, never started). Asked
 * once when the screen opens and on Refresh, never in a loop (the server rate-limits them).
 * Shown at the end of the Stats screen. After an unpair the service deletes the key and the
 * pairing, and the app shows the Pair screen.
 */
@Composable
internal fun HistorySections(store: SettingsStore) {
    val scope = rememberCoroutineScope()
    val context = LocalContext.current
    var months by rememberSaveable { mutableStateOf(false) }
    var result by remember { mutableStateOf<StatsResult?>(null) }
    var loading by remember { mutableStateOf(false) }
    var confirming by rememberSaveable { mutableStateOf(false) }
    var unpairing by remember { mutableStateOf(false) }
    var unpairError by remember { mutableStateOf<UnpairResult.Failed?>(null) }

    fun refresh() {
        loading = true
        // The answer comes on the agent's thread: hand it to the UI thread.
        val done = { r: StatsResult ->
            scope.launch(Dispatchers.Main) {
                result = r
                loading = false
            }
            Unit
        }
        val agent = NodeStatus.liveAgent
        if (agent != null) {
            agent.requestHistory(HISTORY_DAYS, HISTORY_MONTHS, done)
        } else {
            ControlOnce.requestHistory(context, store, HISTORY_DAYS, HISTORY_MONTHS, done)
        }
    }
    LaunchedEffect(Unit) { refresh() }

    Section(stringResource(R.string.history_title)) {
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            FilterChip(selected = !months, onClick = { months = false }, label = { Text(stringResource(R.string.history_days)) })
            FilterChip(selected = months, onClick = { months = true }, label = { Text(stringResource(R.string.history_months)) })
        }
        when (val r = result) {
            null -> Text(stringResource(R.string.history_loading), style = MaterialTheme.typography.bodySmall)
            is StatsResult.Ok -> {
                val locale = LocalConfiguration.current.locales[0]
                val dayFormat = remember(locale) { DateTimeFormatter.ofLocalizedDate(FormatStyle.MEDIUM).withLocale(locale) }
                val monthFormat = remember(locale) { DateTimeFormatter.ofPattern("LLLL yyyy", locale) }
                val periods: List<HistoryPeriod> = if (months) r.history.months else r.history.days
                // Newest first: today (or this month) at the top.
                for (p in periods.asReversed()) {
                    ValueRow(
                        (if (months) monthFormat else dayFormat).format(p.start),
                        stringResource(R.string.history_row, Texts.bytes(context, p.bytes), Texts.money(context, p.earnedMicros, r.history.currency)),
                    )
                }
                Text(stringResource(R.string.history_note), style = MaterialTheme.typography.bodySmall)
            }
            is StatsResult.RateLimited ->
                Text(stringResource(R.string.history_rate_limited, r.retryAfterS), style = MaterialTheme.typography.bodySmall)
            is StatsResult.Failed -> Text(Texts.control(context, r.reason, r.detail), style = MaterialTheme.typography.bodySmall)
        }
        TextButton(onClick = { refresh() }, enabled = !loading) { Text(stringResource(R.string.history_refresh)) }
    }

    Section(stringResource(R.string.unpair_title)) {
        Text(stringResource(R.string.unpair_help), style = MaterialTheme.typography.bodySmall)
        unpairError?.let { Text(Texts.control(context, it.reason, it.detail), color = MaterialTheme.colorScheme.error) }
        OutlinedButton(
            onClick = { confirming = true },
            enabled = !unpairing,
            colors = ButtonDefaults.outlinedButtonColors(contentColor = MaterialTheme.colorScheme.error),
            modifier = Modifier.fillMaxWidth(),
        ) {
            Text(stringResource(if (unpairing) R.string.unpair_working else R.string.unpair_title))
        }
    }

    if (confirming) {
        AlertDialog(
            onDismissRequest = { confirming = false },
            title = { Text(stringResource(R.string.unpair_confirm_title)) },
            text = { Text(stringResource(R.string.unpair_help)) },
            confirmButton = {
                TextButton(
                    onClick = {
                        confirming = false
                        unpairing = true
                        unpairError = null
                        val done = { r: UnpairResult ->
                            scope.launch(Dispatchers.Main) {
                                unpairing = false
                                // Success: the key and pairing are forgotten (the service's or
                                // ControlOnce's listener); the Pair screen follows.
                                if (r is UnpairResult.Failed) unpairError = r
                            }
                            Unit
                        }
                        val agent = NodeStatus.liveAgent
                        if (agent != null) agent.unpair(null, done) else ControlOnce.unpair(context, store, done)
                    },
                ) { Text(stringResource(R.string.unpair_confirm), color = MaterialTheme.colorScheme.error) }
            },
            dismissButton = { TextButton(onClick = { confirming = false }) { Text(stringResource(R.string.action_cancel)) } },
        )
    }
}
