package net.traffix.node.ui

import android.os.Build
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import net.traffix.core.device.OemGuide
import net.traffix.node.R
import net.traffix.node.Texts

/**
 * Keeping the node alive: Android's own battery optimisation first, then the extra step this
 * phone's maker needs (core [OemGuide] picks it from the manufacturer), then where the current
 * steps for every maker are kept.
 */
@Composable
internal fun BatteryGuideScreen(onDone: () -> Unit) {
    val context = LocalContext.current
    val guide = OemGuide.forMaker(Build.MANUFACTURER, Build.BRAND)
    ScreenColumn {
        Text(stringResource(R.string.guide_title), style = MaterialTheme.typography.headlineSmall)
        Text(stringResource(R.string.guide_intro), style = MaterialTheme.typography.bodyMedium)
        Section(stringResource(R.string.guide_android_title)) {
            Text(stringResource(R.string.guide_android_steps), style = MaterialTheme.typography.bodyMedium)
            Button(onClick = { openBatterySettings(context) }, modifier = Modifier.fillMaxWidth()) {
                Text(stringResource(R.string.perm_open_settings))
            }
        }
        Section(stringResource(R.string.guide_maker_title, Build.MANUFACTURER)) {
            Text(stringResource(Texts.res(guide)), style = MaterialTheme.typography.bodyMedium)
            TextButton(onClick = { openUrl(context, "https://dontkillmyapp.com/${Build.MANUFACTURER.lowercase()}", "https://dontkillmyapp.com/") }) {
                Text(stringResource(R.string.guide_more))
            }
        }
        OutlinedButton(onClick = onDone, modifier = Modifier.fillMaxWidth()) { Text(stringResource(R.string.action_done)) }
    }
}
